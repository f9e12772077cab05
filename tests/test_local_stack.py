"""End to end, as a user runs it: scripts/local_stack.py (moto server + chalice local + the local executor + the runner
subprocess) on free loopback ports, driven over real HTTP. One stack serves the whole story to keep CI fast."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from chalicelib.wiring import validate_submission
from scripts import local_stack

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
GOOD, BROKEN = "tiny-local-demo", "broken-local-demo"
EVERY_STATUS = ["QUEUED", "PLANNED", "RUNNING", "VALIDATED", "SUCCEEDED"]
RUN_TIMEOUT_S = 150.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_competitions(mirror: Path) -> None:
    """A tiny binary-classification competition as Kaggle delivers it, and one whose download is a corrupt zip."""
    rng = np.random.default_rng(7)
    features = rng.normal(size=(260, 3))
    target = (features[:, 0] + 0.5 * features[:, 1] + rng.normal(scale=0.3, size=260) > 0).astype(int)
    folder = mirror / GOOD
    folder.mkdir(parents=True)
    with (folder / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "a", "b", "c", "label"])
        writer.writerows([i, *np.round(features[i], 4), target[i]] for i in range(200))
    with (folder / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "a", "b", "c"])
        writer.writerows([i, *np.round(features[i], 4)] for i in range(200, 260))
    with (folder / "sample_submission.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"])
        writer.writerows([i, 0] for i in range(200, 260))
    (mirror / f"{BROKEN}.zip").write_bytes(b"PK\x03\x04 this is not really a zip file")


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    api: str
    moto_port: int
    outbox: Path
    log: Path

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def table(self) -> Any:
        dynamodb = boto3.resource(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        return dynamodb.Table(local_stack.LOCAL_ENVIRONMENT["KAGENT_RUNS_TABLE"])


def start(tmp_path: Path) -> Stack:
    mirror, outbox, log = tmp_path / "mirror", tmp_path / "outbox", tmp_path / "stack.log"
    write_competitions(mirror)
    port, moto_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KAGGLE_", "AWS_", "KAGENT_"))}
    env.update(
        PORT=str(port),
        MOTO_PORT=str(moto_port),
        KAGENT_MAX_RUNNING="1",
        KAGENT_RUN_TIME_BUDGET_S="20",
        KAGENT_DATA_MIRROR=str(mirror),
        KAGENT_OUTBOX=str(outbox),
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "local_stack.py")], cwd=REPO, env=env, stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + 90
    while b"local stack ready" not in log.read_bytes():
        assert process.poll() is None, f"the stack exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"the stack was not ready in time:\n{log.read_text()}"
        time.sleep(0.2)
    return Stack(process, f"http://127.0.0.1:{port}", moto_port, outbox, log)


def stop(stack: Stack) -> int:
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
    try:
        return stack.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        return stack.process.wait()


def processes_of(moto_port: int) -> list[str]:
    """Processes whose environment names this stack's emulator port: the stack, chalice local, runners."""
    marker = f"MOTO_PORT={moto_port}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append((environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start(tmp_path)
    try:
        yield running
    finally:
        stop(running)


def http(method: str, url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_run(stack: Stack, slug: str, email: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    query = urllib.parse.urlencode({"url": f"https://www.kaggle.com/competitions/{slug}", "email": email})
    status, headers, body = http("POST", f"{stack.api}/run?{query}")
    return status, headers, json.loads(body)


def follow(stack: Stack, run_id: str) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status, _, body = http("GET", f"{stack.api}/runs/{run_id}")
        assert status == 200, body
        run = json.loads(body)
        if not seen or seen[-1] != run["status"]:
            seen.append(run["status"])
        if run["status"] in ("SUCCEEDED", "FAILED"):
            return run, seen
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish; seen {seen}\n{stack.log.read_text()[-3000:]}")


def email_for(stack: Stack, run_id: str) -> tuple[str, str]:
    """(subject, body) of the one email about the run in the outbox."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [p for p in stack.outbox.glob("*.eml") if run_id in p.read_text(encoding="utf-8")]
        if found:
            assert len(found) == 1, f"run {run_id} was emailed {len(found)} times"
            message = message_from_bytes(found[0].read_bytes(), policy=policy.default)
            body = message.get_body(("plain",))
            assert body is not None
            return str(message["Subject"]), str(body.get_content())
        time.sleep(0.2)
    raise AssertionError(f"no email about run {run_id} in {stack.outbox}")


def bad_requests_get_400s_naming_the_field(stack: Stack) -> None:
    for query, field in [
        ("email=me%40example.com", "url"),
        ("url=https%3A%2F%2Fexample.com%2Fcompetitions%2Fx&email=me%40example.com", "url"),
        (f"url=https%3A%2F%2Fwww.kaggle.com%2Fcompetitions%2F{GOOD}&email=not-an-email", "email"),
    ]:
        status, _, body = http("POST", f"{stack.api}/run?{query}")
        assert (status, json.loads(body)["field"]) == (400, field), body


def test_the_local_stack_serves_the_whole_flow_and_stops_without_leftovers(stack: Stack) -> None:
    bad_requests_get_400s_naming_the_field(stack)

    status, _, accepted = post_run(stack, GOOD, "first@example.com")
    assert status == 202, accepted
    status, headers, refused = post_run(stack, GOOD, "second@example.com")  # KAGENT_MAX_RUNNING=1: the slot is taken
    assert status == 429, refused
    assert headers.get("Retry-After")

    run, seen = follow(stack, accepted["run_id"])
    assert run["status"] == "SUCCEEDED", f"{run}\n{stack.log.read_text()[-3000:]}"
    assert list(run["timestamps"]) == EVERY_STATUS
    assert [s for s in EVERY_STATUS if s in seen] == seen, f"statuses went backwards: {seen}"
    assert run["metric"] and isinstance(run["cv_score"], float)

    subject, body = email_for(stack, run["run_id"])
    assert "ready" in subject
    link = next(line for line in body.splitlines() if line.startswith("http://127.0.0.1:"))
    status, _, downloaded = http("GET", link)
    assert status == 200
    s3 = stack.s3()
    bucket = local_stack.LOCAL_ENVIRONMENT["KAGENT_ARTIFACTS_BUCKET"]
    written = s3.get_object(Bucket=bucket, Key=f"{run['run_id']}/submission.csv")["Body"].read()
    sample = s3.get_object(Bucket=bucket, Key=f"{run['run_id']}/sample_submission.csv")["Body"].read()
    assert downloaded == written
    assert validate_submission(downloaded, sample) == []

    status, _, broken = post_run(stack, BROKEN, "first@example.com")
    assert status == 202, broken
    failed, _ = follow(stack, broken["run_id"])
    assert failed["status"] == "FAILED"
    assert "not a valid zip file" in failed["error"]
    subject, body = email_for(stack, broken["run_id"])
    assert "failed" in subject
    assert "not a valid zip file" in body

    table = stack.table()
    assert table.get_item(Key={"run_id": "#slots"})["Item"]["in_flight"] == 0
    for run_id in (run["run_id"], failed["run_id"]):
        assert "slot_held" not in table.get_item(Key={"run_id": run_id})["Item"]

    # Stopped mid-run, as Ctrl-C does: nothing of the stack may survive (chalice local, the runner, its sandbox).
    status, _, last = post_run(stack, GOOD, "third@example.com")
    assert status == 202, last
    deadline = time.monotonic() + 60
    while json.loads(http("GET", f"{stack.api}/runs/{last['run_id']}")[2])["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the last run never started"
        time.sleep(0.1)
    time.sleep(1.0)
    if not Path("/proc").is_dir():
        pytest.skip("no /proc here to look for leftover processes")
    assert len(processes_of(stack.moto_port)) >= 3, processes_of(stack.moto_port)  # stack, chalice, runner
    assert stop(stack) == 0
    assert processes_of(stack.moto_port) == []
    local_stack.check_free(stack.moto_port, "MOTO_PORT")  # the emulator's port is free again
