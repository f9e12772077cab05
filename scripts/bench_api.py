"""Measure the API's budgets: `import app` cold, POST /run handler latency against moto in-process, package size.

    .venv/bin/python -m scripts.bench_api                 # import time and POST /run latency
    .venv/bin/python -m scripts.bench_api --package       # also `chalice package` (pip downloads the Lambda deps)

From the repository root: it measures that checkout's app.py with the tests' moto set-up (tests/moto_env.py).

Budgets (README, section api): `import app` <= 1 s cold, POST /run median <= 50 ms, deployment.zip <= 10 MB.
Exits non-zero when a measured figure is over its budget.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IMPORT_BUDGET_S = 1.0
POST_BUDGET_MS = 50.0
PACKAGE_BUDGET_MB = 10.0


def import_seconds(repeats: int) -> list[float]:
    """Wall time of `import app` in a fresh interpreter, minus the bare interpreter start (no bytecode cache)."""
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}

    def wall(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-B", "-c", code], cwd=REPO, env=env, check=True)
        return time.perf_counter() - start

    return [max(0.0, wall("import app") - wall("pass")) for _ in range(repeats)]


def post_latencies_ms(requests: int) -> list[float]:
    """POST /run through chalice.test.Client with DynamoDB, S3, SES and Step Functions mocked in-process by moto."""
    # lazy: moto and the app only for this measurement
    from chalice.test import Client  # noqa: PLC0415
    from moto import mock_aws  # noqa: PLC0415

    from chalicelib import wiring  # noqa: PLC0415

    try:  # the tests' moto set-up and app.py: the checkout's root is on the path under `python -m scripts.bench_api`
        from tests import moto_env  # noqa: PLC0415 - lazy: the tests package exists only in a checkout
    except ModuleNotFoundError as missing:
        raise SystemExit("bench_api: run it from the repository root as `python -m scripts.bench_api`") from missing

    warnings.filterwarnings("ignore", message="IAMAuthorizer is not a supported in local mode")
    patch = _Environment()
    limit = str(requests + 10)  # every request is admitted: slots and the caller's daily quota both suffice
    quota = {"KAGENT_RUNS_PER_CALLER_PER_DAY": limit}
    moto_env.service_environment(patch, KAGENT_MAX_RUNNING=limit, **quota)  # type: ignore[arg-type]
    try:
        with mock_aws():
            moto_env.create_runs_table()
            moto_env.create_bucket()
            moto_env.verify_sender()
            moto_env.create_state_machine()
            wiring.reset()
            import app  # noqa: PLC0415 - lazy: imported inside the mock, after the environment is set

            with tempfile.TemporaryDirectory() as project, Client(app.app, project_dir=project) as client:
                url = "/run?url=https%3A%2F%2Fwww.kaggle.com%2Fcompetitions%2Ftitanic&email=me%40example.com"
                client.http.post(url)  # warm: clients created, models loaded
                timings = []
                for _ in range(requests):
                    start = time.perf_counter()
                    response = client.http.post(url, headers={"Idempotency-Key": uuid.uuid4().hex})
                    timings.append((time.perf_counter() - start) * 1000)
                    if response.status_code != 202:
                        raise SystemExit(f"POST /run answered {response.status_code}: {response.body!r}")
                return timings
    finally:
        patch.undo()


class _Environment:
    """The two MonkeyPatch methods moto_env uses, for a script without pytest fixtures."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def setenv(self, name: str, value: str) -> None:
        self._saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def delenv(self, name: str, raising: bool = True) -> None:
        self._saved.setdefault(name, os.environ.get(name))
        os.environ.pop(name, None)

    def undo(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def package_megabytes(stage: str) -> float:
    chalice = Path(sys.executable).with_name("chalice")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([str(chalice), "package", "--stage", stage, out], cwd=REPO, check=True, capture_output=True)
        return (Path(out) / "deployment.zip").stat().st_size / 1_000_000


def report(name: str, value: float, unit: str, budget: float) -> bool:
    ok = value <= budget
    print(f"{name:<34} {value:10.3f} {unit:<3} (budget {budget:g} {unit}) {'ok' if ok else 'OVER BUDGET'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="POST /run requests to time (default 200)")
    parser.add_argument("--imports", type=int, default=5, help="cold `import app` runs (default 5)")
    parser.add_argument("--package", action="store_true", help="also build `chalice package` and weigh the zip")
    parser.add_argument("--stage", default="local", help="the stage `chalice package` builds (default local)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.imports < 1:
        parser.error("--requests and --imports must be at least 1")

    results: list[bool] = []
    imports = import_seconds(args.imports)
    results.append(report("import app, cold (median)", statistics.median(imports), "s", IMPORT_BUDGET_S))
    posts = post_latencies_ms(args.requests)
    results.append(report("POST /run vs moto (median)", statistics.median(posts), "ms", POST_BUDGET_MS))
    p95: Any = statistics.quantiles(posts, n=20)[-1] if len(posts) >= 20 else max(posts)
    print(f"{'POST /run vs moto (p95)':<34} {p95:10.3f} ms  ({len(posts)} requests)")
    if args.package:
        results.append(report("chalice package deployment.zip", package_megabytes(args.stage), "MB", PACKAGE_BUDGET_MB))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
