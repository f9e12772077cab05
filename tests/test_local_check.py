"""Plain `chalice local` (no local AWS, no stage settings) stops in one line naming `make local`; the local stack's
`chalice local --stage local`, deployed stages and `chalice deploy` are not stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.local_check import MESSAGE, plain_chalice_local_problem

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ["chalice", "local"]


@pytest.mark.parametrize(
    ("argv", "env", "stopped"),
    [
        (LOCAL, {"AWS_CHALICE_CLI_MODE": "true"}, True),  # plain: the dev stage has no settings
        ([*LOCAL, "--stage", "dev"], {"AWS_CHALICE_CLI_MODE": "true", "AWS_DEFAULT_REGION": "us-east-1"}, True),
        (LOCAL, {"AWS_CHALICE_CLI_MODE": "true", "KAGENT_STAGE": "local"}, True),  # local stage, but no local AWS
        (
            [*LOCAL, "--stage", "local"],
            {"AWS_CHALICE_CLI_MODE": "true", "KAGENT_STAGE": "local", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
            False,
        ),
        (LOCAL, {"AWS_CHALICE_CLI_MODE": "true", "KAGENT_STAGE": "prod"}, False),  # a deployed stage's settings
        (["chalice", "deploy"], {"AWS_CHALICE_CLI_MODE": "true"}, False),
        (["pytest"], {}, False),
    ],
)
def test_only_plain_chalice_local_is_stopped(argv, env, stopped):
    assert (plain_chalice_local_problem(argv, env) == MESSAGE) is stopped


@pytest.mark.slow
@pytest.mark.parametrize("reload", [True, False])
def test_plain_chalice_local_exits_with_one_line_saying_make_local(reload):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KAGENT_", "CHALICE_"))}
    chalice = Path(sys.executable).parent / "chalice"
    args = [str(chalice), "local", "--port", "8797", *([] if reload else ["--no-autoreload"])]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.stderr.strip().splitlines() == [MESSAGE]
    assert "Serving on" not in done.stdout
    assert "make local" in MESSAGE
    if not reload:
        assert done.returncode == 2
