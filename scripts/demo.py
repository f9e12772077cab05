"""`make demo`: the whole service on this machine, one run of the bundled example competition, start to email.

    python scripts/demo.py [--slug breast-cancer-demo] [--timeout 600]

Starts the local stack (scripts/local_stack.py; its output goes to .local/demo/stack.log), sends the README's
`curl -X POST .../run?url=...&email=demo@example.com`, follows GET /runs/{run_id} printing each status and each phase
of the runner's live progress as they change, then prints the score, downloads submission.csv through the emailed link
and report.html through the run's link, prints the email and how long the service took around the runner, stops the
stack and ends with the report's path. Exits non-zero, with the reason, if the run or the stack fails.
Environment: PORT, MOTO_PORT and the KAGENT_* settings, as for `make local`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from chalicelib.vocabulary import LOGS_FILE, artifact_key, competition_url
from runner.progress import describe, round_score  # stdlib only
from scripts import local_stack

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SLUG = "breast-cancer-demo"
DEMO_EMAIL = "demo@example.com"
DEMO_DIR = REPO / ".local" / "demo"
TERMINAL = ("SUCCEEDED", "FAILED")
POLL_S = 0.25
PROGRESS_INTERVAL_S = "1"  # the runner stores progress every second here (15 s in the cloud): every phase shows
EMAIL_WAIT_S = 30.0
STACK_START_S = 120.0


class DemoError(RuntimeError):
    """The demo cannot go on; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Stack:
    process: subprocess.Popen[bytes]
    api: str
    env: dict[str, str]
    log: Path


def http(method: str, url: str) -> tuple[int, Any]:
    """(status, parsed JSON body or raw bytes) — error statuses are answers too."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 - http on loopback only
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def competition_present(mirror: Path, slug: str) -> bool:
    return (mirror / slug).is_dir() or (mirror / f"{slug}.zip").is_file()


def start_stack(env: Mapping[str, str]) -> Stack:
    port = local_stack.port_from(env, "PORT", local_stack.DEFAULT_PORT)
    moto_port = local_stack.port_from(env, "MOTO_PORT", local_stack.DEFAULT_MOTO_PORT)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    log = DEMO_DIR / "stack.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "local_stack.py")],
            cwd=REPO,
            env=dict(env),
            stdout=sink,
            stderr=sink,
        )
    stack = Stack(process, f"http://{local_stack.HOST}:{port}", local_stack.stack_environment(env, moto_port), log)
    deadline = time.monotonic() + STACK_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the local stack did not start:\n{tail(log)}")
        if b"local stack ready" in log.read_bytes():
            return stack
        time.sleep(0.2)
    stop_stack(stack)
    raise DemoError(f"the local stack was not ready within {STACK_START_S:g} s:\n{tail(log)}")


def stop_stack(stack: Stack) -> None:
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
    try:
        stack.process.wait(timeout=local_stack.STOP_GRACE_S + 15)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait()


def tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def submit(api: str, slug: str) -> dict[str, Any]:
    url = competition_url(slug)
    query = urllib.parse.urlencode({"url": url, "email": DEMO_EMAIL}, safe=":/@")
    print(f'$ curl -X POST "{api}/run?{query}"')
    status, body = http("POST", f"{api}/run?{query}")
    print(f"  {status} {json.dumps(body)}")
    if status != 202:
        raise DemoError(f"POST /run answered {status}: {body}")
    return dict(body)


def progress_key(run: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a progress line new: the phase, the candidate, the best score (not the clock)."""
    progress = run.get("progress") or {}
    return (progress.get("phase"), progress.get("candidate"), progress.get("best_cv"))


def follow(status_url: str, started: float, timeout_s: float) -> dict[str, Any]:
    """GET the run until it is terminal, printing each new status and each new phase of its progress."""
    seen = ""
    phase: tuple[Any, ...] = ()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code, run = http("GET", status_url)
        if code != 200:
            raise DemoError(f"GET {status_url} answered {code}: {run}")
        if run["status"] != seen:
            seen = run["status"]
            detail = run.get("plan_summary") if seen == "PLANNED" else ""
            print(f"  [{time.time() - started:6.1f} s] {seen}" + (f"  ({detail})" if detail else ""), flush=True)
        if run.get("progress") and progress_key(run) != phase and seen not in TERMINAL:
            phase = progress_key(run)
            print(f"  [{time.time() - started:6.1f} s]   {describe(run['progress'])}", flush=True)
        if seen in TERMINAL:
            return dict(run)
        time.sleep(POLL_S)
    raise DemoError(f"the run did not finish within {timeout_s:g} s (last status {seen or 'unknown'})")


def find_email(outbox: Path, run_id: str) -> Path:
    deadline = time.monotonic() + EMAIL_WAIT_S
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml")):
            if run_id in path.read_text(encoding="utf-8", errors="replace"):
                return path
        time.sleep(POLL_S)
    raise DemoError(f"no email for run {run_id} reached the outbox {outbox} within {EMAIL_WAIT_S:g} s")


def email_text(path: Path) -> tuple[str, str]:
    """(the email as shown: headers and body, its body)."""
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    body = message.get_body(("plain",))
    content = str(body.get_content()) if body is not None else ""
    headers = "\n".join(f"{name}: {message[name]}" for name in ("From", "To", "Subject", "Date"))
    return f"{headers}\n\n{content}", content


def link_in(body: str) -> str:
    for line in body.splitlines():
        if line.strip().startswith(("http://", "https://")):
            return line.strip()
    raise DemoError("the success email has no link")


def download(link: str, target: Path) -> Path:
    status, body = http("GET", link)
    if status != 200 or not isinstance(body, bytes | str):
        raise DemoError(f"the emailed link answered {status}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body if isinstance(body, bytes) else body.encode())
    return target


def runner_log_span(env: Mapping[str, str], run_id: str) -> tuple[float, float] | None:
    """(first, last) epoch seconds of the lines in the logs.txt the runner uploaded: the runner's own time."""
    import boto3  # noqa: PLC0415 - lazy: the demo reads the artifact as an operator would

    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = local_stack.LOCAL_ENVIRONMENT["KAGENT_ARTIFACTS_BUCKET"]
    try:
        text = (
            s3.get_object(Bucket=bucket, Key=artifact_key(run_id, LOGS_FILE))["Body"].read().decode("utf-8", "replace")
        )
    except Exception:
        return None
    stamps = [epoch(line.split(" ", 1)[0]) for line in text.splitlines() if line[:4].isdigit()]
    return (stamps[0], stamps[-1]) if len(stamps) >= 2 else None


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def runner_task_seconds(stack_log: Path, run_id: str) -> float | None:
    """The runner task's wall time (process start to exit), as the local executor logged it."""
    pattern = re.compile(rf"run {re.escape(run_id)}: runner task exited with code \d+ after ([0-9.]+) s")
    found = pattern.search(stack_log.read_text(encoding="utf-8", errors="replace"))
    return float(found.group(1)) if found else None


def timing(
    run: Mapping[str, Any], started: float, emailed: float, task_s: float | None, logged: tuple[float, float] | None
) -> str:
    """API -> email, split into the runner task's own time and the service around it."""
    total = emailed - started
    if task_s is None:
        return f"API -> email {total:.1f} s (the runner task's time was not found in the stack log)"
    stamps = {status: epoch(value) for status, value in (run.get("timestamps") or {}).items()}
    plan = stamps.get("PLANNED", started) - started
    mark = emailed - stamps.get("VALIDATED", emailed)
    service = total - task_s
    work = f"; its logged work {logged[1] - logged[0]:.1f} s" if logged else ""
    lines = [
        f"API -> email {total:.1f} s = the runner task {task_s:.1f} s (process start to exit{work})"
        f" + the service around it {service:.1f} s:",
        f"  {'POST /run, Plan':<40} {plan:5.2f} s",
        f"  {'task dispatch, ValidateOutput':<40} {service - plan - mark:5.2f} s",
        f"  {'MarkSucceeded, presigned link, email':<40} {mark:5.2f} s",
    ]
    return "\n".join(lines)


def report(run: dict[str, Any], stack: Stack, started: float) -> Path:
    outbox = Path(stack.env["KAGENT_OUTBOX"])
    email_path = find_email(outbox, run["run_id"])
    shown, body = email_text(email_path)
    if run["status"] == "FAILED":
        print(f"\nThe email ({email_path}):\n\n{shown}")
        raise DemoError(f"the run failed: {run.get('error')}")
    print(f"\nScore: {run.get('metric')} = {round_score(run.get('cv_score'))} (cross-validated)")
    submission = download(link_in(body), DEMO_DIR / "submission.csv")
    rows = len(submission.read_text(encoding="utf-8").splitlines()) - 1
    print(f"Submission: {submission} ({rows} rows, downloaded through the emailed link)")
    print(f"\nThe email ({email_path}):\n\n{shown}")
    task_s = runner_task_seconds(stack.log, run["run_id"])
    logged = runner_log_span(stack.env, run["run_id"])
    print(timing(run, started, email_path.stat().st_mtime, task_s, logged))
    return fetch_report(run)


def fetch_report(run: Mapping[str, Any]) -> Path:
    """report.html through the run's presigned link (GET /runs/{id} gives it), saved beside submission.csv."""
    link = (run.get("links") or {}).get("report_url")
    if not link:
        raise DemoError("the run has no report link (report.html was not uploaded)")
    return download(link, DEMO_DIR / "report.html")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slug", default=DEFAULT_SLUG, help=f"a competition in the mirror (default {DEFAULT_SLUG})")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run (default 600)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("KAGENT_PROGRESS_INTERVAL_S", PROGRESS_INTERVAL_S)
    try:
        mirror = Path(local_stack.stack_environment(env, 0)["KAGENT_DATA_MIRROR"])
        if not competition_present(mirror, args.slug):
            raise DemoError(f"{args.slug} is not in the mirror {mirror}: run python scripts/make_examples.py first")
        print(f"Starting the local stack (log: {DEMO_DIR / 'stack.log'}) ...", flush=True)
        stack = start_stack(env)
    except (DemoError, local_stack.StackError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    try:
        print(f"API {stack.api}, AWS emulator {stack.env['AWS_ENDPOINT_URL']}\n", flush=True)
        started = time.time()
        accepted = submit(stack.api, args.slug)
        run = follow(accepted["status_url"], started, args.timeout)
        page = report(run, stack, started)
    except DemoError as error:
        stop_stack(stack)
        print("Local stack stopped.")
        print(f"\ndemo failed: {error}", file=sys.stderr)
        return 1
    except BaseException:
        stop_stack(stack)
        raise
    stop_stack(stack)
    print("Local stack stopped.")
    print(f"\nReport: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
