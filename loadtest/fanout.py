"""Fan-out load runner for the local stack: open-loop POST /run and GET /runs/{id} at fixed arrival rates.

    python loadtest/fanout.py --start-stack     # start the local stack, measure, stop it (make loadtest)
    python loadtest/fanout.py --base-url http://127.0.0.1:8000 --aws-endpoint http://127.0.0.1:5000 --max-running 2

For each rate (default 10, 25, 50 req/s) it sends POST /run for `--stage-seconds` at that arrival rate (requests start
on schedule whether or not earlier ones answered) and, interleaved at the same rate, GET /runs/{id} for the runs
admitted so far. It reports P50/P95/P99 latency and the error rate of each, counts 429s and checks each is clean (JSON
`error` and a positive Retry-After), samples the runs in flight while it runs (the slot counter and the runs holding
slots, read from the stack's DynamoDB emulator), then waits until every admitted run is terminal.

It exits 1 when a check fails: a 5xx or connection error, an unclean 429, more than `--max-running` runs in flight, a
run still not terminal after `--drain-seconds`, a slot still held at the end. Standard library only (plus boto3 for the
sampling). Loopback only, and bounded: at most MAX_REQUESTS requests and MAX_STAGE_S seconds per stage.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_COMPETITION = "https://www.kaggle.com/competitions/breast-cancer-demo"  # examples/mirror: tiny, trains fast
TERMINAL = ("SUCCEEDED", "FAILED")
NON_TERMINAL = ("QUEUED", "PLANNED", "RUNNING", "VALIDATED")
RUNS_TABLE = "kagent-local-runs"
SLOTS_KEY = "#slots"
MAX_REQUESTS = 20_000
MAX_STAGE_S = 120.0
REQUEST_TIMEOUT_S = 30.0
SAMPLE_EVERY_S = 0.1


class LoadError(RuntimeError):
    """The load run cannot start (bad arguments, the stack did not come up); the message says why."""


@dataclass
class Result:
    kind: str  # "post" | "get"
    rate: int
    status: int  # 0: no HTTP answer (connection error or timeout)
    latency_s: float
    lag_s: float  # how late the request started against its schedule (open-loop fidelity)
    clean_429: bool | None = None
    run_id: str | None = None
    error: str | None = None


@dataclass
class StageFigures:
    rate: int
    sent: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    by_status: dict[str, int]
    error_rate: float  # 5xx and no-answer share of requests (429 and 404 are answers the API promises)
    max_lag_ms: float


@dataclass
class Report:
    base_url: str
    max_running: int
    stage_seconds: float
    post: list[StageFigures] = field(default_factory=list)
    get: list[StageFigures] = field(default_factory=list)
    admitted: int = 0
    refused_429: int = 0
    unclean_429: int = 0
    in_flight_samples: int = 0
    max_in_flight_counter: int = 0
    max_runs_holding_slots: int = 0
    terminal: dict[str, int] = field(default_factory=dict)
    not_terminal: list[str] = field(default_factory=list)
    failed_reasons: dict[str, int] = field(default_factory=dict)
    drain_s: float = 0.0
    slots_held_at_end: int | None = None
    problems: list[str] = field(default_factory=list)


# -- HTTP ------------------------------------------------------------------------------------------------------------


def check_loopback(base_url: str) -> None:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise LoadError(f"--base-url must be http:// on this machine (127.0.0.1, localhost or ::1), got {base_url!r}")


def call(method: str, url: str) -> tuple[int, dict[str, str], bytes, str | None]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310 - loopback only
            return response.status, dict(response.headers), response.read(), None
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read(), None
    except (OSError, TimeoutError) as error:
        return 0, {}, b"", f"{type(error).__name__}: {error}"


def is_clean_429(headers: dict[str, str], body: bytes) -> bool:
    try:
        answer = json.loads(body)
        retry_after = int(headers.get("Retry-After", "0"))
    except ValueError:
        return False
    return isinstance(answer, dict) and bool(answer.get("error")) and retry_after > 0


def run_url(base_url: str, competition: str, email: str) -> str:
    return f"{base_url}/run?" + urllib.parse.urlencode({"url": competition, "email": email})


# -- the load --------------------------------------------------------------------------------------------------------


class Load:
    def __init__(self, base_url: str, competition: str, workers: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.competition = competition
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load")
        self.results: list[Result] = []
        self.admitted: list[str] = []
        self._lock = threading.Lock()
        self._serial = itertools.count()

    def post(self, rate: int, scheduled: float) -> Result:
        lag = time.monotonic() - scheduled
        email = f"load{next(self._serial)}@example.com"
        started = time.perf_counter()
        status, headers, body, error = call("POST", run_url(self.base_url, self.competition, email))
        result = Result("post", rate, status, time.perf_counter() - started, lag, error=error)
        if status == 202:
            result.run_id = json.loads(body)["run_id"]
            with self._lock:
                self.admitted.append(result.run_id)
        elif status == 429:
            result.clean_429 = is_clean_429(headers, body)
        elif status:
            result.error = body[:200].decode("utf-8", "replace")
        return result

    def get(self, rate: int, scheduled: float, index: int) -> Result:
        lag = time.monotonic() - scheduled
        with self._lock:
            known = list(self.admitted)
        run_id = known[index % len(known)] if known else str(uuid.uuid4())  # none yet: the 404 path is measured
        started = time.perf_counter()
        status, _, body, error = call("GET", f"{self.base_url}/runs/{run_id}")
        result = Result("get", rate, status, time.perf_counter() - started, lag, run_id=run_id, error=error)
        if status not in (200, 404) and status:
            result.error = body[:200].decode("utf-8", "replace")
        return result

    def stage(self, rate: int, seconds: float) -> None:
        """Open loop: request i starts at start + i/rate; GETs interleave half a period later."""
        count = int(rate * seconds)
        start = time.monotonic() + 0.05
        futures: list[Future[Result]] = []
        for i in range(count):
            post_at, get_at = start + i / rate, start + (i + 0.5) / rate
            _sleep_until(post_at)
            futures.append(self.pool.submit(self.post, rate, post_at))
            _sleep_until(get_at)
            futures.append(self.pool.submit(self.get, rate, get_at, i))
        for future in futures:
            self.results.append(future.result())

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# -- runs in flight --------------------------------------------------------------------------------------------------


class SlotSampler:
    """Samples the slot counter and the runs holding slots in the stack's DynamoDB, in a thread, until stopped."""

    def __init__(self, endpoint: str, table: str) -> None:
        import boto3  # noqa: PLC0415 - only when sampling

        self._client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the emulator's fake credentials
        )
        self._table = table
        self.samples: list[tuple[int, int]] = []  # (counter, runs holding a slot)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slot-sampler", daemon=True)

    def counter(self) -> int:
        item = self._client.get_item(TableName=self._table, Key={"run_id": {"S": SLOTS_KEY}}, ConsistentRead=True)
        return int(item.get("Item", {}).get("in_flight", {}).get("N", "0"))

    def holding(self) -> int:
        pages = self._client.get_paginator("scan").paginate(
            TableName=self._table, FilterExpression="attribute_exists(slot_held)", ConsistentRead=True
        )
        return sum(page["Count"] for page in pages)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            with contextlib.suppress(Exception):  # a dropped sample is not a finding; the final check is strict
                self.samples.append((self.counter(), self.holding()))

    def __enter__(self) -> SlotSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- draining --------------------------------------------------------------------------------------------------------


def drain(base_url: str, run_ids: list[str], seconds: float) -> dict[str, dict[str, Any]]:
    """Poll every admitted run until it is terminal or the time is up; the last view of each."""
    views: dict[str, dict[str, Any]] = {}
    pending = list(run_ids)
    deadline = time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        still = []
        for run_id in pending:
            status, _, body, _ = call("GET", f"{base_url}/runs/{run_id}")
            view = json.loads(body) if status == 200 else {"status": f"HTTP {status}"}
            views[run_id] = view
            if view.get("status") not in TERMINAL:
                still.append(run_id)
        pending = still
        if pending:
            time.sleep(0.5)
    return views


# -- figures ---------------------------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def figures(results: list[Result], kind: str, rate: int) -> StageFigures:
    chosen = [r for r in results if r.kind == kind and r.rate == rate]
    latencies = [r.latency_s * 1000 for r in chosen if r.status]
    by_status: dict[str, int] = {}
    for r in chosen:
        key = str(r.status) if r.status else "no answer"
        by_status[key] = by_status.get(key, 0) + 1
    errors = sum(1 for r in chosen if not r.status or r.status >= 500)
    return StageFigures(
        rate=rate,
        sent=len(chosen),
        p50_ms=round(percentile(latencies, 0.50), 1),
        p95_ms=round(percentile(latencies, 0.95), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        by_status=dict(sorted(by_status.items())),
        error_rate=round(errors / len(chosen), 4) if chosen else 0.0,
        max_lag_ms=round(max((r.lag_s for r in chosen), default=0.0) * 1000, 1),
    )


def judge(report: Report, results: list[Result]) -> None:
    for r in results:
        if not r.status:
            report.problems.append(f"{r.kind.upper()} at {r.rate} req/s got no answer: {r.error}")
        elif r.status >= 500:
            report.problems.append(f"{r.kind.upper()} at {r.rate} req/s answered {r.status}: {r.error}")
        elif r.kind == "post" and r.status not in (202, 429):
            report.problems.append(f"POST at {r.rate} req/s answered {r.status}: {r.error}")
    if report.unclean_429:
        report.problems.append(f"{report.unclean_429} 429 answers lacked a JSON error or a Retry-After")
    if report.max_in_flight_counter > report.max_running or report.max_runs_holding_slots > report.max_running:
        report.problems.append(
            f"runs in flight exceeded KAGENT_MAX_RUNNING={report.max_running}: counter up to "
            f"{report.max_in_flight_counter}, runs holding slots up to {report.max_runs_holding_slots}"
        )
    if report.not_terminal:
        report.problems.append(f"{len(report.not_terminal)} admitted runs not terminal: {report.not_terminal[:5]}")
    if report.slots_held_at_end:
        report.problems.append(f"{report.slots_held_at_end} slots still held after every run ended")
    if report.admitted == 0:
        report.problems.append("no run was admitted: the load never reached the run path")
    report.problems = report.problems[:20]


def markdown(report: Report) -> str:
    lines = [
        "| rate (req/s) | POST sent | 202 | 429 (clean) | 5xx / no answer | POST p50 / p95 / p99 (ms) "
        "| GET sent | GET p50 / p95 / p99 (ms) | GET errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for post, get in zip(report.post, report.get, strict=True):
        bad = sum(n for k, n in post.by_status.items() if k == "no answer" or k.startswith("5"))
        lines.append(
            f"| {post.rate} | {post.sent} | {post.by_status.get('202', 0)} | {post.by_status.get('429', 0)} | {bad} "
            f"| {post.p50_ms:g} / {post.p95_ms:g} / {post.p99_ms:g} | {get.sent} "
            f"| {get.p50_ms:g} / {get.p95_ms:g} / {get.p99_ms:g} | {get.error_rate:.1%} |"
        )
    terminal = ", ".join(f"{k} {v}" for k, v in sorted(report.terminal.items())) or "none"
    lines += [
        "",
        f"- KAGENT_MAX_RUNNING={report.max_running}; runs in flight sampled {report.in_flight_samples} times: slot "
        f"counter at most {report.max_in_flight_counter}, runs holding a slot at most {report.max_runs_holding_slots}",
        f"- admitted {report.admitted}, refused with 429 {report.refused_429} ({report.unclean_429} unclean); "
        f"terminal after {report.drain_s:.0f} s: {terminal}; not terminal: {len(report.not_terminal)}; "
        f"slots held at the end: {report.slots_held_at_end}",
        f"- checks: {'all passed' if not report.problems else 'FAILED: ' + '; '.join(report.problems)}",
    ]
    if report.failed_reasons:
        lines.append(f"- FAILED runs' reasons: {report.failed_reasons}")
    return "\n".join(lines)


# -- the local stack -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_stack(max_running: int, time_budget_s: int, log_path: Path) -> Iterator[tuple[str, str]]:
    """scripts/local_stack.py on free loopback ports, offline (no OpenAI, no Kaggle); yields (api, aws endpoint)."""
    port, moto_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KAGGLE_", "AWS_", "KAGENT_"))}
    outbox = Path(tempfile.mkdtemp(prefix="kagent-load-outbox-"))
    env.update(
        PORT=str(port),
        MOTO_PORT=str(moto_port),
        KAGENT_MAX_RUNNING=str(max_running),
        KAGENT_RUN_TIME_BUDGET_S=str(time_budget_s),
        KAGENT_OUTBOX=str(outbox),
    )
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "local_stack.py")], cwd=REPO, env=env, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 90
        while b"local stack ready" not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise LoadError(f"the local stack did not start; its log:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{moto_port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- main ------------------------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, base_url: str, aws_endpoint: str | None, log: Callable[[str], None]) -> Report:
    report = Report(base_url=base_url, max_running=args.max_running, stage_seconds=args.stage_seconds)
    load = Load(base_url, args.competition, args.workers)
    sampler = SlotSampler(aws_endpoint, args.table) if aws_endpoint else None
    with sampler or contextlib.nullcontext():
        try:
            for rate in args.rates:
                log(f"{rate} req/s for {args.stage_seconds:g} s ...")
                load.stage(rate, args.stage_seconds)
        finally:
            load.close()
        report.admitted = len(load.admitted)
        log(f"waiting for {report.admitted} admitted runs to end (at most {args.drain_seconds:g} s) ...")
        started = time.monotonic()
        views = drain(base_url, load.admitted, args.drain_seconds)
        report.drain_s = time.monotonic() - started
    for rate in args.rates:
        report.post.append(figures(load.results, "post", rate))
        report.get.append(figures(load.results, "get", rate))
    posts = [r for r in load.results if r.kind == "post"]
    report.refused_429 = sum(1 for r in posts if r.status == 429)
    report.unclean_429 = sum(1 for r in posts if r.status == 429 and not r.clean_429)
    for run_id, view in views.items():
        status = str(view.get("status"))
        if status in TERMINAL:
            report.terminal[status] = report.terminal.get(status, 0) + 1
            if status == "FAILED":
                reason = str(view.get("error"))[:120]
                report.failed_reasons[reason] = report.failed_reasons.get(reason, 0) + 1
        else:
            report.not_terminal.append(run_id)
    if sampler is not None:
        report.in_flight_samples = len(sampler.samples)
        report.max_in_flight_counter = max((c for c, _ in sampler.samples), default=0)
        report.max_runs_holding_slots = max((h for _, h in sampler.samples), default=0)
        # A run can be FAILED a moment before its slot is back (the runner records the failure; MarkFailed or the
        # reconciler releases the slot once the workflow ended): wait for that within what is left of the drain time.
        deadline = started + args.drain_seconds
        while (held := sampler.counter() + sampler.holding()) and time.monotonic() < deadline:
            time.sleep(0.5)
        report.slots_held_at_end = held
    judge(report, load.results)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--start-stack", action="store_true", help="start scripts/local_stack.py for the run")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="a running local stack's API")
    parser.add_argument(
        "--aws-endpoint", help="its AWS emulator (to sample runs in flight), e.g. http://127.0.0.1:5000"
    )
    parser.add_argument("--table", default=RUNS_TABLE)
    parser.add_argument("--competition", default=DEFAULT_COMPETITION)
    parser.add_argument("--rates", default="10,25,50", help="arrival rates in req/s, comma-separated")
    parser.add_argument("--stage-seconds", type=float, default=20.0)
    parser.add_argument("--max-running", type=int, default=2, help="KAGENT_MAX_RUNNING of the stack")
    parser.add_argument("--time-budget", type=int, default=10, help="KAGENT_RUN_TIME_BUDGET_S (--start-stack)")
    parser.add_argument("--drain-seconds", type=float, default=300.0)
    parser.add_argument("--workers", type=int, default=128, help="client threads (requests in flight at once)")
    parser.add_argument("--json-out", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        args.rates = [int(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates must be whole numbers separated by commas, got {args.rates!r}")
    if not args.rates or min(args.rates) < 1:
        parser.error("--rates must name at least one positive rate")
    if not 0 < args.stage_seconds <= MAX_STAGE_S:
        parser.error(f"--stage-seconds must be in (0, {MAX_STAGE_S:g}]")
    total = 2 * sum(args.rates) * args.stage_seconds
    if total > MAX_REQUESTS:
        parser.error(f"that is {total:.0f} requests; at most {MAX_REQUESTS} per load run")
    if args.max_running < 1 or args.workers < 1 or args.drain_seconds <= 0:
        parser.error("--max-running, --workers and --drain-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.start_stack:
            log_path = Path(tempfile.mkstemp(prefix="kagent-load-stack-", suffix=".log")[1])
            with local_stack(args.max_running, args.time_budget, log_path) as (api, endpoint):
                log(f"local stack up at {api} (log {log_path})")
                report = measure(args, api, endpoint, log)
        else:
            check_loopback(args.base_url)
            if args.aws_endpoint:
                check_loopback(args.aws_endpoint)
            report = measure(args, args.base_url, args.aws_endpoint, log)
    except LoadError as error:
        print(f"loadtest: {error}", file=sys.stderr)
        return 2
    print(markdown(report))
    if args.json_out:
        args.json_out.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
