"""The whole service on this machine: a local AWS (moto server) and `chalice local --stage local` in front of it.

    python scripts/local_stack.py            # what `make local` runs; Ctrl-C (or SIGTERM) stops everything

Environment: PORT (API, default 8000), MOTO_PORT (AWS emulator, default 5000), and the local stage's tunables
(scripts/recordresources.py LOCAL_DEFAULTS: KAGENT_MAX_RUNNING, KAGENT_RUN_TIME_BUDGET_S, KAGENT_OUTBOX,
KAGENT_DATA_MIRROR, ...), OPENAI_* and KAGGLE_* as in the cloud. Both servers bind 127.0.0.1 only.

The emulator runs in this process; it gets the table, bucket and SES identity Terraform would create, named by the
local stage of .chalice/config.json. The app reaches it through AWS_ENDPOINT_URL, boto3's standard setting, so the app
runs its cloud code unchanged. chalice local runs in its own process group (with the runners it starts), which is
signalled as a whole on shutdown: no process is left behind. The emulator keeps everything in memory: each start is
a fresh, empty service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from chalicelib.runs import table_spec
from scripts.recordresources import LOCAL_DEFAULTS, LOCAL_ENVIRONMENT

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MOTO_PORT = 5000
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0  # runners record "stopped by SIGTERM" and upload their logs before this
PATH_SETTINGS = ("KAGENT_OUTBOX", "KAGENT_DATA_MIRROR")


class StackError(RuntimeError):
    """The stack cannot start; the message says why and what to do."""


def port_from(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{name} must be a port number, got {raw!r}")
    return int(raw)


def check_free(port: int, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            probe.bind((HOST, port))
        except OSError:
            raise StackError(f"port {port} on {HOST} is in use: stop what holds it or set {name}") from None


def stack_environment(base: Mapping[str, str], moto_port: int) -> dict[str, str]:
    """What chalice local (and the runners it starts) gets: the shell, the local defaults where the shell has no
    value, absolute data and outbox paths, and the emulator's endpoint."""
    env = dict(base)
    for name, value in LOCAL_DEFAULTS.items():
        if not env.get(name, "").strip():
            env[name] = value
    for name in PATH_SETTINGS:
        env[name] = str((REPO / env[name]).resolve())
    env.update(
        {key: LOCAL_ENVIRONMENT[key] for key in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    env["AWS_ENDPOINT_URL"] = f"http://{HOST}:{moto_port}"
    env["MOTO_PORT"] = str(moto_port)  # moto's Step Functions and callbacks find the server by it
    env["PYTHONUNBUFFERED"] = "1"
    return env


def create_resources(endpoint: str) -> None:
    """The table, bucket and verified sender Terraform creates in the cloud, in the emulator."""
    import boto3  # noqa: PLC0415 - lazy: only when the stack starts

    session = boto3.session.Session(
        aws_access_key_id=LOCAL_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_ENVIRONMENT["AWS_DEFAULT_REGION"],
    )
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    dynamodb.create_table(**table_spec(LOCAL_ENVIRONMENT["KAGENT_RUNS_TABLE"]))
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=LOCAL_ENVIRONMENT["KAGENT_ARTIFACTS_BUCKET"])
    session.client("ses", endpoint_url=endpoint).verify_email_identity(
        EmailAddress=LOCAL_ENVIRONMENT["KAGENT_SES_SENDER"]
    )


EMULATOR_DYNAMODB_CALLS = (
    "transact_write_items",
    "update_item",
    "put_item",
    "delete_item",
    "get_item",
    "scan",
    "query",
)


def serialize_emulator_dynamodb() -> None:
    """One lock around each call of moto's DynamoDB backend, as DynamoDB serializes conditional writes per item.

    moto applies a transaction item by item and, when a condition fails (every 429 of POST /run), restores a deep copy
    of the whole table taken at its start: under concurrent requests that copy raises "dictionary changed size during
    iteration" (a 500 from the emulator) or silently undoes other requests' writes, such as a slot given back.
    """
    import threading  # noqa: PLC0415 - lazy: moto only when the stack starts

    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    lock = threading.RLock()

    def locked(original: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        return call

    for name in EMULATOR_DYNAMODB_CALLS:
        setattr(DynamoDBBackend, name, locked(getattr(DynamoDBBackend, name)))


def chalice_command(port: int) -> list[str]:
    chalice = Path(sys.executable).parent / "chalice"
    launcher = [str(chalice)] if chalice.exists() else [sys.executable, "-m", "chalice.cli"]
    # No autoreload: its restarts would orphan running executions; the definition and the runner are re-read per run.
    return [*launcher, "local", "--stage", "local", "--host", HOST, "--port", str(port), "--no-autoreload"]


def api_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/runs/ready-check", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # a 404 JSON answer: the app is serving
    except OSError:
        return False


def wait_until_serving(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"chalice local exited with code {process.returncode} before serving (see above)")
        if api_answers(port):
            return
        time.sleep(0.2)
    raise StackError(f"chalice local did not answer on port {port} within {READY_TIMEOUT_S:g} s")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to chalice local's process group (the app and its runners), SIGKILL to what is left after the grace."""
    if process.poll() is None or _group_alive(process.pid):
        _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and _group_alive(process.pid):
            process.poll()
            time.sleep(0.1)
        _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # The leader may be a zombie we have not reaped yet; other members keep the group alive.
    return not _only_zombies(group)


def _only_zombies(group: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return False
    return True


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def banner(port: int, moto_port: int, env: Mapping[str, str]) -> str:
    summary = {
        "api": f"http://{HOST}:{port}",
        "aws_emulator": env["AWS_ENDPOINT_URL"],
        "outbox": env["KAGENT_OUTBOX"],
        "data_mirror": env["KAGENT_DATA_MIRROR"],
        "max_running": env["KAGENT_MAX_RUNNING"],
        "llm": env.get("KAGENT_LLM_MODEL") if env.get("OPENAI_API_KEY") else "none (template models)",
    }
    lines = [f"  {key:<13} {value}" for key, value in summary.items()]
    example = (
        f'curl -X POST "http://{HOST}:{port}/run?url=https://www.kaggle.com/competitions/<slug>&email=me@example.com"'
    )
    return "\n".join(["kagent local stack ready:", *lines, f"  try: {example}", "  Ctrl-C stops it."])


def run(env: Mapping[str, str]) -> int:
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - lazy: heavy import, only when the stack starts

    port = port_from(env, "PORT", DEFAULT_PORT)
    moto_port = port_from(env, "MOTO_PORT", DEFAULT_MOTO_PORT)
    if port == moto_port:
        raise StackError(f"PORT and MOTO_PORT must differ, both are {port}")
    check_free(port, "PORT")
    check_free(moto_port, "MOTO_PORT")
    child_env = stack_environment(env, moto_port)
    previous = {signum: signal.signal(signum, _raise_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not one line per AWS call
    serialize_emulator_dynamodb()
    moto = ThreadedMotoServer(ip_address=HOST, port=moto_port, verbose=False)
    chalice: subprocess.Popen[bytes] | None = None
    try:
        moto.start()
        create_resources(child_env["AWS_ENDPOINT_URL"])
        Path(child_env["KAGENT_OUTBOX"]).mkdir(parents=True, exist_ok=True)
        if not Path(child_env["KAGENT_DATA_MIRROR"]).is_dir():
            print(f"note: KAGENT_DATA_MIRROR {child_env['KAGENT_DATA_MIRROR']} does not exist", file=sys.stderr)
        chalice = subprocess.Popen(chalice_command(port), cwd=REPO, env=child_env, start_new_session=True)
        wait_until_serving(chalice, port)
        print(banner(port, moto_port, child_env), flush=True)
        code = chalice.wait()
        print(f"chalice local exited with code {code}", file=sys.stderr)
        return code or 1
    except Stop:
        print("stopping the local stack ...", file=sys.stderr, flush=True)
        return 0
    finally:
        for signum in previous:  # a second Ctrl-C must not interrupt the clean-up
            signal.signal(signum, signal.SIG_IGN)
        if chalice is not None:
            stop_group(chalice)
        moto.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if args:
        print(f"local_stack.py takes no arguments (got {' '.join(args)}); set PORT / MOTO_PORT", file=sys.stderr)
        return 2
    try:
        return run(os.environ)
    except StackError as error:
        print(f"local stack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
