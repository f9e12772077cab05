"""POST /run after the workflow started: the run exists and runs, so the caller gets its 202 even when DynamoDB
throttles the write that records the execution ARN (a bounded retry, then best effort), never a 5xx that invites a
retry of a run already under way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib import aws, wiring
from chalicelib.runs import Run, RunStore, Status
from chalicelib.service import NOTE_EXECUTION_DELAYS_S, Service
from tests.moto_env import create_runs_table, service_environment

pytestmark = pytest.mark.aws

URL = "https://www.kaggle.com/competitions/titanic"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:kagent-test-runs"


def throttled(operation: str) -> ClientError:
    error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds the allowed"}
    return ClientError({"Error": error}, operation)


class StoreThrottlingRecords(RunStore):
    """A real RunStore whose `record` is throttled the first `times` calls (as after boto3's own retries)."""

    def __init__(self, table: Any, times: int, error: Exception | None = None) -> None:
        super().__init__(table)
        self.left = times
        self.error = error or throttled("UpdateItem")
        self.records = 0

    def record(self, run_id: str, **attrs: Any) -> None:
        self.records += 1
        if self.left > 0:
            self.left -= 1
            raise self.error
        super().record(run_id, **attrs)


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    service_environment(monkeypatch, KAGENT_MAX_RUNNING="3")
    with mock_aws():
        create_runs_table()
        wiring.reset(clients=False)
        yield
    wiring.reset(clients=False)


def service_with(store: RunStore, started: list[str], slept: list[float]) -> Service:
    def executor(run: Run, payload: dict[str, Any]) -> str:
        started.append(run.run_id)
        return MACHINE.replace(":stateMachine:", ":execution:") + ":" + run.run_id

    real = wiring.service()
    return Service(
        settings=real.settings,
        store=store,
        s3=None,
        mailer=real.mailer,
        executor=executor,
        validator=real.validator,
        sleep=slept.append,
    )


def submit(service: Service) -> Any:
    return service.submit({"url": URL, "email": "ann@example.com"}, None, None, "http://api")


def test_a_throttled_execution_record_after_the_start_still_answers_202_and_the_run_runs(cloud):
    store = StoreThrottlingRecords(aws.runs_table(), times=99)
    started: list[str] = []
    slept: list[float] = []

    reply = submit(service_with(store, started, slept))

    assert reply.status == 202, reply.body
    assert reply.body["status"] == "QUEUED" and started == [reply.body["run_id"]]
    run = store.get(reply.body["run_id"])
    assert run is not None and run.status is Status.QUEUED and run.slot_held and run.execution_arn is None
    assert store.records == len(NOTE_EXECUTION_DELAYS_S) + 1 and slept == list(NOTE_EXECUTION_DELAYS_S)
    assert sum(slept) < 1.0  # bounded: the request does not hang on a throttled table


def test_a_briefly_throttled_execution_record_is_retried_and_kept(cloud):
    store = StoreThrottlingRecords(aws.runs_table(), times=1)

    reply = submit(service_with(store, [], []))

    assert reply.status == 202
    run = store.get(reply.body["run_id"])
    assert run is not None and run.execution_arn and run.execution_arn.endswith(run.run_id)


def test_an_unexpected_error_recording_the_execution_is_not_retried_and_still_answers_202(cloud):
    store = StoreThrottlingRecords(aws.runs_table(), times=1, error=RuntimeError("boom"))
    slept: list[float] = []

    reply = submit(service_with(store, [], slept))

    assert reply.status == 202 and store.records == 1 and slept == []
