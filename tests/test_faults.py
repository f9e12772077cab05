"""Faults end to end, as the user meets them: the real statemachine.asl.json (followed by the local executor), the real
step handlers of app.py, the real runner entrypoint where the fault lives in it, moto for AWS, then the reconciler as
EventBridge would call it. For each fault: the run ends terminal with a precise reason, its slot is given back, the user
gets one email with the reason and advice (or the run records why the email failed), and nothing of the failed run is
offered as a result (no link in the email or on GET /runs/{id}, even when a submission.csv was written).

The fault table in docs/load-faults.md names, for every fault, this test or the other test files that prove it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib import asl, aws, config, wiring
from chalicelib import local_executor as lx
from chalicelib.run_request import RunRequest
from chalicelib.runs import Run, RunStore, Status
from chalicelib.service import Service
from runner import runner_main
from tests.fake_kaggle import FakeKaggle
from tests.moto_env import (
    BUCKET,
    REGION,
    create_bucket,
    create_runs_table,
    sent_emails,
    serialized_dynamodb,
    service_environment,
    verify_sender,
)
from tests.runner_task import COMPETITION, FakeEngine

pytestmark = pytest.mark.aws

SLUG = "tiny"
EMAIL = "carol@example.com"
REQUEST = RunRequest(url=f"https://www.kaggle.com/competitions/{SLUG}", slug=SLUG, email=EMAIL)
SAMPLE = b"id,y\n5,0\n6,0\n"
Runner = Callable[[dict[str, str]], "int | tuple[int, str]"]


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    service_environment(monkeypatch, KAGENT_MAX_RUNNING="3")
    with mock_aws():
        create_runs_table()
        create_bucket()
        verify_sender()
        wiring.reset()
        yield
    wiring.reset()


@pytest.fixture
def kaggle(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKaggle]:
    fake = FakeKaggle().start()
    fake.patch_endpoint(monkeypatch)
    fake.add_competition(SLUG, COMPETITION)
    yield fake
    fake.stop()


def store() -> RunStore:
    return RunStore(aws.runs_table())


def app_module() -> Any:
    import app  # noqa: PLC0415

    return app


def play(runner: Runner, wrap: Callable[[str, Any], Any] | None = None) -> tuple[Run, asl.Execution]:
    """Admit a run, follow the real definition with the real handlers and `runner` as the ECS task, then reconcile
    a bad ending as EventBridge does. `wrap(name, handler)` may replace a step's handler (to inject a fault)."""
    settings = config.settings()
    run = store().admit(REQUEST, settings.max_running)
    handlers = lx.handlers_by_arn(app_module().step_handlers(), settings)
    if wrap is not None:
        handlers = {arn: wrap(arn.rsplit("-", 1)[-1], handler) for arn, handler in handlers.items()}

    def ecs(parameters: Any, timeout_s: float | None) -> dict[str, Any]:
        env = lx.container_environment(parameters, "runner")
        outcome = runner(env)
        code, container_reason = outcome if isinstance(outcome, tuple) else (outcome, "")
        container: dict[str, Any] = {"Name": "runner", "ExitCode": code, "LastStatus": "STOPPED"}
        if container_reason:
            container["Reason"] = container_reason
        description = {"StoppedReason": "Essential container in task exited", "Containers": [container]}
        if code != 0:
            raise asl.StatesError("States.TaskFailed", json.dumps(description))
        return description

    payload = {"run_id": run.run_id, "url": run.url, "email": run.email, "slug": run.slug, "network": {}}
    definition = lx.rendered_definition(settings)
    execution = asl.run_definition(definition, payload, lx.task_dispatch(handlers, ecs), sleep=lambda _s: None)
    if execution.status != "SUCCEEDED":
        machine = f"arn:aws:states:{REGION}:123456789012:stateMachine:kagent-test-runs"
        app_module().reconcile(lx.reconcile_event(run.run_id, execution, machine), None)
    after = store().get(run.run_id)
    assert after is not None
    return after, execution


def emails_to(address: str) -> list[Any]:
    return [m for m in sent_emails() if address in m.destinations["ToAddresses"]]


def assert_user_sees_failure(run: Run, reason: str, advice: str) -> None:
    """FAILED with `reason` in its error, slot back, one failure email with reason and advice, no link anywhere."""
    assert run.status is Status.FAILED, run
    assert reason in (run.error or ""), run.error
    assert not run.slot_held and store().in_flight() == 0
    [email] = emails_to(EMAIL)
    assert "failed" in email.subject and reason in email.body and advice in email.body, email.body
    assert "X-Amz-" not in email.body and "Signature=" not in email.body
    view = wiring.service().describe(run.run_id)
    assert view.status == 200 and view.body["status"] == "FAILED" and view.body["submission_url"] is None


# -- the runner's own faults: the real runner_main with the fake Kaggle server ---------------------------------------


def real_runner(kaggle: FakeKaggle, key: str | None = None) -> Runner:
    def run(container_env: dict[str, str]) -> int:
        env = {**os.environ, **container_env, "KAGGLE_USERNAME": kaggle.username, "KAGGLE_KEY": key or kaggle.key}
        return runner_main.main(env=env, engine=FakeEngine())

    return run


@pytest.mark.parametrize(
    ("fault", "reason", "advice"),
    [
        ("401", "Kaggle credentials rejected (401)", "Credentials were rejected"),
        ("403 rules", f"accept the rules at https://www.kaggle.com/c/{SLUG}/rules", "Accept the competition rules"),
        ("403 closed", f"no permission to download competition '{SLUG}' (403)", "report the run id"),
        ("404", f"no such competition on Kaggle: '{SLUG}' (404)", "Check the competition URL"),
        ("5xx past retries", "Kaggle is unavailable (HTTP 503)", "Retry in a few minutes"),
    ],
)
def test_kaggle_refusals_end_the_run_with_the_actionable_reason_and_one_email(
    cloud, kaggle, monkeypatch, fault, reason, advice
):
    key = None
    if fault == "401":
        key = "not-the-key"
    elif fault == "403 rules":
        kaggle.rules_not_accepted.add(SLUG)
    elif fault == "403 closed":
        kaggle.closed.add(SLUG)
    elif fault == "404":
        del kaggle.competitions[SLUG]
    else:
        kaggle.fail_next(SLUG, *[503] * 10)
        no_sleep = functools.partial(runner_main.KaggleDownloader, sleep=lambda _s: None)
        monkeypatch.setattr(runner_main, "KaggleDownloader", no_sleep)

    run, execution = play(real_runner(kaggle, key))

    assert execution.visited[-2:] == ["MarkFailed", "RunFailed"]
    assert_user_sees_failure(run, reason, advice)
    if fault == "5xx past retries":
        assert "gave up after 5 attempts" in run.error


# -- the task dies or is stopped: what ECS reports is all there is -------------------------------------------------


def dies_after_writing_a_submission(code: int, container_reason: str = "") -> Runner:
    """Claims the run, writes submission.csv (a partial artifact), then is killed before it records anything."""

    def run(container_env: dict[str, str]) -> tuple[int, str]:
        run_id = container_env["RUN_ID"]
        store().transition(run_id, Status.RUNNING)
        s3 = boto3.client("s3", region_name=REGION)
        s3.put_object(Bucket=BUCKET, Key=f"{run_id}/submission.csv", Body=SAMPLE)
        s3.put_object(Bucket=BUCKET, Key=f"{run_id}/sample_submission.csv", Body=SAMPLE)
        return code, container_reason

    return run


@pytest.mark.parametrize(
    ("code", "container_reason", "reason"),
    [
        (137, "", "runner exit code 137: killed by SIGKILL"),
        (-9, "", "runner exit code -9: killed by SIGKILL"),
        (137, "OutOfMemoryError: Container killed due to memory usage", "OutOfMemoryError: Container killed"),
        (2, "", "runner exit code 2"),
    ],
)
def test_a_killed_task_fails_the_run_with_its_exit_code_and_its_submission_is_never_offered(
    cloud, code, container_reason, reason
):
    run, _ = play(dies_after_writing_a_submission(code, container_reason))

    assert_user_sees_failure(run, reason, "")
    assert run.error.startswith("the training task stopped: Essential container in task exited")
    assert boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=f"{run.run_id}/submission.csv")


def test_a_task_past_its_timeout_fails_the_run_saying_so(cloud):
    def hangs(container_env: dict[str, str]) -> int:
        store().transition(container_env["RUN_ID"], Status.RUNNING)
        raise asl.StatesError("States.Timeout", "the runner task ran longer than its TimeoutSeconds (3600 s)")

    run, execution = play(hangs)

    assert execution.visited[-2:] == ["MarkFailed", "RunFailed"]
    assert_user_sees_failure(run, "a step of the run timed out", "ran out of time")
    assert "TimeoutSeconds (3600 s)" in run.error


def test_a_stopped_task_keeps_the_reason_the_runner_recorded_on_sigterm(cloud):
    def stopped(container_env: dict[str, str]) -> int:
        run_id = container_env["RUN_ID"]
        store().transition(run_id, Status.RUNNING)
        store().fail(run_id, "stopped by SIGTERM while training (the task was stopped or timed out)")
        return runner_main.EXIT_TERMINATED

    run, _ = play(stopped)

    assert_user_sees_failure(run, "stopped by SIGTERM while training", "ran out of time or was stopped")


# -- DynamoDB: throttling past boto3's retries, and transitions racing ----------------------------------------------


def throttled(operation: str) -> ClientError:
    error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds the allowed"}
    return ClientError({"Error": error}, operation)


class ThrottledClient:
    """A DynamoDB client whose transactions and reads are throttled (as after boto3's own retries)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.exceptions = real.exceptions

    def transact_write_items(self, **kwargs: Any) -> Any:
        raise throttled("TransactWriteItems")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class ThrottledTable:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.name = real.name
        self.meta = type("Meta", (), {"client": ThrottledClient(real.meta.client)})()

    def get_item(self, **kwargs: Any) -> Any:
        raise throttled("GetItem")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def throttled_service() -> Service:
    real = wiring.service()
    return Service(
        settings=real.settings,
        store=RunStore(ThrottledTable(aws.runs_table())),
        s3=real.s3,
        mailer=real.mailer,
        executor=real.executor,
        validator=real.validator,
    )


def test_a_throttled_run_store_answers_503_with_retry_after_and_admits_nothing(cloud):
    service = throttled_service()

    posted = service.submit({"url": REQUEST.url, "email": EMAIL}, None, None, "http://api")
    read = service.describe("0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f")

    for reply in (posted, read):
        assert reply.status == 503 and int(reply.headers["Retry-After"]) > 0
        assert "ProvisionedThroughputExceededException" in reply.body["error"]
    assert store().in_flight() == 0
    assert aws.runs_table().scan()["Count"] == 0


def test_a_step_throttled_past_retries_fails_the_run_with_the_reason_and_mark_failed_retries_through(cloud):
    calls: dict[str, int] = {"plan": 0, "mark_failed": 0}

    def wrap(name: str, handler: Any) -> Any:
        if name not in calls:
            return handler

        def flaky(event: Any, context: Any) -> Any:
            calls[name] += 1
            if name == "plan" or calls[name] <= 2:  # Plan always throttled; MarkFailed twice, then through
                raise throttled("UpdateItem")
            return handler(event, context)

        return flaky

    run, execution = play(dies_after_writing_a_submission(0), wrap)

    assert calls == {"plan": 1, "mark_failed": 3}  # Plan's Retry covers Lambda service errors only; MarkFailed all
    assert execution.visited == ["Plan", "MarkFailed", "RunFailed"]
    assert_user_sees_failure(run, "ProvisionedThroughputExceededException", "A service was busy")


def test_mark_failed_throttled_every_time_is_finished_by_the_reconciler(cloud):
    def wrap(name: str, handler: Any) -> Any:
        if name != "mark_failed":
            return handler

        def always_throttled(event: Any, context: Any) -> Any:
            raise throttled("TransactWriteItems")

        return always_throttled

    def fails(container_env: dict[str, str]) -> int:
        store().transition(container_env["RUN_ID"], Status.RUNNING)
        return 1

    run, execution = play(fails, wrap)

    assert execution.status == "FAILED" and execution.visited[-1] == "MarkFailed"
    assert_user_sees_failure(run, "the workflow failed", "")


def validated_run() -> Run:
    runs = store()
    run = runs.admit(REQUEST, max_running=50)
    s3 = boto3.client("s3", region_name=REGION)
    for name in ("submission.csv", "sample_submission.csv"):
        s3.put_object(Bucket=BUCKET, Key=f"{run.run_id}/{name}", Body=SAMPLE)
    for status in (Status.PLANNED, Status.RUNNING, Status.VALIDATED):
        runs.transition(run.run_id, status)
    return run


def at_once(barrier: threading.Barrier, step: Callable[[], Any]) -> None:
    barrier.wait()
    with contextlib.suppress(Exception):  # the loser of a race may raise RunAlreadyEnded; the state is checked after
        step()


def test_racing_terminal_transitions_end_once_email_once_and_give_the_slot_back_once(cloud):
    """MarkSucceeded, MarkFailed (a late Catch), the reconciler (an abort) and the runner's own failure, all at once."""
    app = app_module()
    machine = config.settings().state_machine_arn
    outcomes = []
    with serialized_dynamodb():
        for _ in range(6):
            run = validated_run()
            event = {"run_id": run.run_id}
            steps = [
                lambda e=event: app.mark_succeeded(e, None),
                lambda e=event: app.mark_failed({**e, "error": {"Error": "States.Timeout", "Cause": "late"}}, None),
                lambda r=run: app.reconcile(
                    {
                        "detail-type": "Step Functions Execution Status Change",
                        "source": "aws.states",
                        "detail": {"name": r.run_id, "status": "ABORTED", "stateMachineArn": machine},
                    },
                    None,
                ),
                lambda r=run: store().fail(r.run_id, "runner failed"),
            ]
            barrier = threading.Barrier(len(steps))
            threads = [threading.Thread(target=at_once, args=(barrier, step)) for step in steps]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            # Whoever lost, the slot must come back: the runner's store.fail alone would have released it too.
            app.mark_failed({**event, "error": {"Error": "Retry", "Cause": "again"}}, None)
            after = store().get(run.run_id)
            outcomes.append(after.status)
            assert after.status.is_terminal and not after.slot_held
            mails = [m for m in sent_emails() if run.run_id in m.body]
            assert len(mails) == 1, [m.subject for m in mails]
            expected = "ready" if after.status is Status.SUCCEEDED else "failed"
            assert expected in mails[0].subject
        assert store().in_flight() == 0


# -- SIGKILL, for real: the runner process killed mid-download -----------------------------------------------------

LAUNCHER = (
    "import sys; from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint; "
    "_env_to_endpoint[KaggleEnv.PROD] = sys.argv[1]; "
    "from runner.runner_main import main; sys.exit(main())"
)
ROOT = Path(__file__).resolve().parent.parent


def pids_with(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_runner_killed_with_sigkill_mid_run_ends_failed_with_its_slot_back(monkeypatch, tmp_path):
    """A real runner process (moto server, fake Kaggle holding the download) gets SIGKILL: it records nothing, so the
    task's exit code is the only witness; the workflow still ends the run, releases the slot and emails the user."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: PLC0415

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    kaggle = FakeKaggle(file_delay_s=60).start()
    kaggle.add_competition(SLUG, COMPETITION)
    try:
        host, port = moto.get_host_and_port()
        service_environment(monkeypatch, KAGENT_MAX_RUNNING="3", AWS_ENDPOINT_URL=f"http://{host}:{port}")
        wiring.reset()
        aws.resource("dynamodb").create_table(
            TableName=config.settings().runs_table,
            KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        aws.client("s3").create_bucket(Bucket=BUCKET)
        aws.client("ses").verify_email_identity(EmailAddress=config.settings().ses_sender)

        def runner(container_env: dict[str, str]) -> int:
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(tmp_path),
                "PYTHONPATH": str(ROOT),
                **{k: v for k, v in os.environ.items() if k.startswith(("AWS_", "KAGENT_"))},
                **container_env,
                "KAGGLE_USERNAME": kaggle.username,
                "KAGGLE_KEY": kaggle.key,
            }
            process = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, kaggle.url], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL
            )
            try:
                assert kaggle.download_started.wait(60), "the runner never reached the Kaggle download"
                time.sleep(0.2)
                process.send_signal(signal.SIGKILL)
                return process.wait(30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()

        run, execution = play(runner)

        assert execution.visited[-2:] == ["MarkFailed", "RunFailed"]
        assert run.timestamps.get("RUNNING"), "the runner had claimed the run before it was killed"
        assert_failure_over_the_server(run)
        assert pids_with(f"RUN_ID={run.run_id}") == []
    finally:
        kaggle.stop()
        moto.stop()
        wiring.reset()


def assert_failure_over_the_server(run: Run) -> None:
    assert run.status is Status.FAILED
    assert "runner exit code -9: killed by SIGKILL" in (run.error or "")
    assert not run.slot_held and store().in_flight() == 0
    assert run.notified_at and not run.email_error  # the moto server's SES accepted exactly one email
    view = wiring.service().describe(run.run_id)
    assert view.body["status"] == "FAILED" and view.body["submission_url"] is None
