"""Plain `chalice local` (the default `dev` stage) has no AWS to talk to: stop it in one line that says what to run.

The local stage needs a local AWS (moto server) and the stage's settings; `make local` (scripts/local_stack.py) starts
both and runs `chalice local --stage local` with them. Started any other way — no AWS endpoint and no stage settings —
every request would fail with botocore's NoRegionError or NoCredentialsError, so the server never starts instead.
`chalice deploy` and `chalice package` import the app too: only the `local` command is checked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from chalicelib.config import STAGE

MESSAGE = (
    "kagent: plain `chalice local` has no AWS to talk to (no region, no endpoint): run `make local`, which starts a "
    "local AWS (moto server) and `chalice local --stage local` with the local stage's settings"
)


def plain_chalice_local_problem(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The one-line reason to stop, when this process is `chalice local` without the local stack; else None."""
    running_local = env.get("AWS_CHALICE_CLI_MODE") == "true" and len(argv) > 1 and "local" in argv[1:2]
    if not running_local:
        return None
    configured = env.get(STAGE, "").strip() and (env.get("AWS_ENDPOINT_URL") or env.get(STAGE) != "local")
    return None if configured else MESSAGE


def stop_plain_chalice_local(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> None:
    problem = plain_chalice_local_problem(sys.argv if argv is None else argv, os.environ if env is None else env)
    if problem is None:
        return
    sys.stderr.write(problem + "\n")
    sys.stderr.flush()
    if (os.environ if env is None else env).get("CHALICE_WORKER"):
        # chalice local's autoreload worker imports the app in a server thread, where SystemExit would end only the
        # thread and leave the process watching files: end the worker (the reloader then stops too)
        os._exit(2)
    raise SystemExit(2)
