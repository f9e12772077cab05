"""The sweeper (app.sweep, every few minutes): no run stays in flight, or holds its slot, after its workflow ended.

It is the safety net under the reconciler and the step Lambdas: a run whose workflow never started (and whose FAILED
write was throttled too), a run whose execution ended without the reconciler's event being handled, a terminal run
whose slot release was lost. It finds them through the sparse index of runs holding a slot, asks Step Functions
(moto here) about each execution, and takes the reconciler's own path: FAILED with the reason, the slot back exactly
once, one email. Every write is conditional, so a run another path finishes meanwhile is left as that path left it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from chalice.test import Client
from moto import mock_aws

from chalicelib import aws, config, wiring
from chalicelib.run_request import RunRequest
from chalicelib.runs import Run, RunStore, Status, utc_now
from chalicelib.service import NEVER_STARTED, SWEEP_GRACE_S, Service, execution_end_reason
from tests.moto_env import (
    create_bucket,
    create_runs_table,
    create_state_machine,
    sent_emails,
    service_environment,
    verify_sender,
)

pytestmark = pytest.mark.aws

EMAIL = "dora@example.com"
REQUEST = RunRequest(url="https://www.kaggle.com/competitions/titanic", slug="titanic", email=EMAIL)
URL_AND_EMAIL = {"url": REQUEST.url, "email": EMAIL}


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    service_environment(monkeypatch, KAGENT_MAX_RUNNING="5")
    with mock_aws():
        create_runs_table()
        create_bucket()
        verify_sender()
        create_state_machine()
        wiring.reset()
        yield
    wiring.reset()


def store() -> RunStore:
    return RunStore(aws.runs_table())


def later(service: Service, seconds: float = SWEEP_GRACE_S + 1) -> Service:
    """The service as the sweeper sees it `seconds` after now."""
    service.now = lambda: utc_now() + timedelta(seconds=seconds)
    return service


def emails() -> list[Any]:
    return [m for m in sent_emails() if EMAIL in m.destinations["ToAddresses"]]


def assert_failed_once(run_id: str, reason: str) -> None:
    run = store().get(run_id)
    assert run is not None and run.status is Status.FAILED and reason in (run.error or ""), run
    assert not run.slot_held and store().in_flight() == 0
    [email] = emails()
    assert "failed" in email.subject and reason in email.body


def throttled(operation: str) -> ClientError:
    error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds the allowed"}
    return ClientError({"Error": error}, operation)


class StoreThrottlingFail(RunStore):
    def fail(self, run_id: str, reason: str) -> bool:
        raise throttled("TransactWriteItems")


def service_with(store_: RunStore, executor: Callable[[Run, dict[str, Any]], str]) -> Service:
    real = wiring.service()
    return Service(
        settings=real.settings,
        store=store_,
        s3=real.s3,
        mailer=real.mailer,
        executor=executor,
        validator=real.validator,
        describe_execution=real.describe_execution,
    )


def refuse_to_start(run: Run, payload: dict[str, Any]) -> str:
    raise RuntimeError("StartExecution throttled")


def test_a_run_whose_workflow_never_started_and_whose_failure_write_was_throttled_is_failed_and_freed(cloud):
    posted = service_with(StoreThrottlingFail(aws.runs_table()), refuse_to_start).submit(
        URL_AND_EMAIL, None, None, "http://api"
    )
    assert posted.status == 503 and "could not start" in posted.body["error"]  # not a 500
    run_id = posted.body["run_id"]
    assert store().get(run_id).slot_held and store().in_flight() == 1  # the leak the sweeper closes

    assert wiring.service().sweep()["failed"] == []  # within the grace period it may still be starting
    report = later(wiring.service()).sweep()

    assert report["failed"] == [run_id] and report["errors"] == []
    assert_failed_once(run_id, NEVER_STARTED)
    assert later(wiring.service()).sweep() == {"checked": 0, "released": [], "failed": [], "errors": []}


def start_execution(run: Run) -> str:
    sfn = aws.client("stepfunctions")
    machine = config.settings().state_machine_arn
    return str(sfn.start_execution(stateMachineArn=machine, name=run.run_id, input="{}")["executionArn"])


def test_a_run_whose_execution_was_aborted_without_the_reconciler_is_failed_with_its_reason(cloud):
    run = store().admit(REQUEST, 5)
    arn = start_execution(run)
    store().record(run.run_id, execution_arn=arn)
    store().transition(run.run_id, Status.PLANNED)
    aws.client("stepfunctions").stop_execution(executionArn=arn)  # the EventBridge event never handled

    report = wiring.service().sweep()  # no grace needed: Step Functions says the execution ended

    assert report["failed"] == [run.run_id]
    assert_failed_once(run.run_id, "aborted")


def test_a_running_execution_is_left_alone_even_when_post_run_could_not_record_its_arn(cloud):
    run = store().admit(REQUEST, 5)
    start_execution(run)  # started, but the execution ARN was never recorded (a throttled write after the start)

    report = later(wiring.service(), seconds=10 * SWEEP_GRACE_S).sweep()

    assert report == {"checked": 1, "released": [], "failed": [], "errors": []}
    stored = store().get(run.run_id)
    assert stored.status is Status.QUEUED and stored.slot_held and emails() == []


@pytest.mark.parametrize(
    "execution",
    [
        {"status": "FAILED", "error": "States.Runtime", "cause": "bad path"},
        {"status": "TIMED_OUT"},
        {"status": "ABORTED"},
        {"status": "SUCCEEDED"},
    ],
)
def test_every_ending_of_the_execution_ends_a_live_run_on_the_reconcilers_path(cloud, execution):
    run = store().admit(REQUEST, 5)
    store().transition(run.run_id, Status.RUNNING)
    service = wiring.service()
    asked: list[str] = []
    service.describe_execution = lambda arn: asked.append(arn) or execution

    service.sweep()

    expected = (
        "without recording the run's outcome" if execution["status"] == "SUCCEEDED" else execution_end_reason(execution)
    )
    assert_failed_once(run.run_id, expected)
    assert asked == [f"arn:aws:states:us-east-1:123456789012:execution:kagent-test-runs:{run.run_id}"]


def test_a_terminal_run_still_holding_its_slot_gets_it_back_once(cloud):
    run = store().admit(REQUEST, 5)
    # The FAILED write landed but not the slot's release (a crash between two writes of an older path).
    aws.runs_table().update_item(
        Key={"run_id": run.run_id},
        UpdateExpression="SET #s = :failed",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":failed": "FAILED"},
    )
    assert store().in_flight() == 1

    first, second = wiring.service().sweep(), wiring.service().sweep()

    assert first["released"] == [run.run_id] and second["checked"] == 0
    assert store().in_flight() == 0 and not store().get(run.run_id).slot_held


def test_a_run_another_path_finishes_during_the_sweep_is_left_as_that_path_left_it(cloud):
    run = store().admit(REQUEST, 5)
    app_service = wiring.service()

    def succeeds_meanwhile(arn: str) -> dict[str, Any]:
        for status in (Status.PLANNED, Status.RUNNING, Status.VALIDATED, Status.SUCCEEDED):
            store().transition(run.run_id, status)
        return {"status": "SUCCEEDED"}

    app_service.describe_execution = succeeds_meanwhile
    app_service.sweep()

    stored = store().get(run.run_id)
    assert stored.status is Status.SUCCEEDED and stored.error is None
    assert store().in_flight() == 0 and emails() == []  # no failure email for a run that succeeded


def reconcile_event(client: Client, run_id: str, status: str) -> dict[str, Any]:
    machine = config.settings().state_machine_arn
    body = {"stateMachineArn": machine, "name": run_id, "status": status}
    return client.events.generate_cw_event("aws.states", "Step Functions Execution Status Change", body, [])


@pytest.mark.parametrize("order", ["reconciler first", "sweeper first"])
def test_the_sweeper_and_the_reconciler_end_a_run_once_in_either_order(cloud, tmp_path, order):
    from app import app  # noqa: PLC0415

    run = store().admit(REQUEST, 5)
    arn = start_execution(run)
    aws.client("stepfunctions").stop_execution(executionArn=arn)
    with Client(app, project_dir=str(tmp_path)) as client:
        scheduled = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, [])
        steps = [
            lambda: client.lambda_.invoke("reconcile", reconcile_event(client, run.run_id, "ABORTED")),
            lambda: client.lambda_.invoke("sweep", scheduled),
        ]
        for step in steps if order == "reconciler first" else steps[::-1]:
            step()

    assert_failed_once(run.run_id, "aborted")


def test_one_runs_trouble_does_not_stop_the_sweep_of_the_others(cloud):
    first, second = store().admit(REQUEST, 5), store().admit(REQUEST, 5)
    service = wiring.service()

    def describe(arn: str) -> dict[str, Any]:
        if arn.endswith(first.run_id):
            raise throttled("DescribeExecution")
        return {"status": "ABORTED"}

    service.describe_execution = describe
    report = service.sweep()

    assert report["failed"] == [second.run_id] and len(report["errors"]) == 1 and first.run_id in report["errors"][0]
    assert store().get(first.run_id).status is Status.QUEUED and store().in_flight() == 1


def test_with_the_local_executor_only_a_run_that_never_started_is_failed(cloud):
    never, planned = store().admit(REQUEST, 5), store().admit(REQUEST, 5)
    store().transition(planned.run_id, Status.PLANNED)  # a local execution thread is following it
    service = later(wiring.service())
    service.describe_execution = None  # KAGENT_EXECUTOR=local: executions are threads that reconcile themselves

    report = service.sweep()

    assert report["failed"] == [never.run_id]
    assert store().get(planned.run_id).status is Status.PLANNED and store().in_flight() == 1


def test_the_index_lists_exactly_the_runs_holding_a_slot_oldest_first_and_bounded(cloud):
    runs = [store().admit(REQUEST, 5) for _ in range(4)]
    store().fail(runs[1].run_id, "done")

    listed = store().holding_slots(limit=10)

    assert set(listed) == {runs[0].run_id, runs[2].run_id, runs[3].run_id}
    queued = [store().get(run_id).created_at for run_id in listed]
    assert queued == sorted(queued)
    assert store().holding_slots(limit=2) == listed[:2]
