"""The run store: admission control, idempotency, forward-only transitions and exactly-once slot release."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from moto import mock_aws

from chalicelib.runs import AdmissionRefused, IdempotencyConflict, Run, RunStore, Status, run_id_for
from tests.moto_env import create_runs_table, fake_credentials, serialized_dynamodb


@dataclass(frozen=True)
class Request:
    url: str = "https://www.kaggle.com/competitions/titanic"
    slug: str = "titanic"
    email: str = "me@example.com"


class StepClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def table(monkeypatch):
    fake_credentials(monkeypatch)
    with mock_aws():
        yield create_runs_table()


@pytest.fixture
def store(table):
    return RunStore(table, clock=StepClock(), sleep=lambda _s: None)


def test_status_order_is_forward_only_and_terminal_is_final():
    assert Status.QUEUED.can_move_to(Status.PLANNED)
    assert Status.QUEUED.can_move_to(Status.RUNNING)
    assert not Status.RUNNING.can_move_to(Status.PLANNED)
    assert not Status.PLANNED.can_move_to(Status.PLANNED)
    assert all(s.can_move_to(Status.FAILED) for s in Status if not s.is_terminal)
    assert not any(Status.SUCCEEDED.can_move_to(s) or Status.FAILED.can_move_to(s) for s in Status)
    assert set(Status.SUCCEEDED.predecessors()) == {Status.QUEUED, Status.PLANNED, Status.RUNNING, Status.VALIDATED}


def test_idempotency_key_maps_to_one_stable_run_id():
    assert run_id_for("abc") == run_id_for("abc") != run_id_for("abd")
    assert run_id_for("abc", "arn:aws:iam::1:user/a") == run_id_for("abc", "arn:aws:iam::1:user/a")
    assert run_id_for("abc", "arn:aws:iam::1:user/a") != run_id_for("abc", "arn:aws:iam::1:user/b")
    assert run_id_for("b\nc", "a") != run_id_for("c", "a\nb")  # no way to shift a key's start into the caller
    assert run_id_for(None) != run_id_for(None)


@pytest.mark.aws
def test_admit_creates_a_queued_run_holding_a_slot(store):
    run = store.admit(Request(), max_running=2)
    stored = store.get(run.run_id)
    assert stored == run
    assert stored.status is Status.QUEUED and stored.slot_held
    assert stored.timestamps[Status.QUEUED] == "2026-01-01T00:00:01.000Z"
    assert store.in_flight() == 1


@pytest.mark.aws
def test_admit_refuses_when_every_slot_is_taken(store):
    store.admit(Request(), max_running=2)
    store.admit(Request(), max_running=2)
    with pytest.raises(AdmissionRefused):
        store.admit(Request(), max_running=2)
    assert store.in_flight() == 2


@pytest.mark.aws
def test_same_idempotency_key_returns_the_same_run_without_taking_a_slot(store):
    first = store.admit(Request(), max_running=5, idempotency_key="k-1")
    again = store.admit(Request(), max_running=5, idempotency_key="k-1")
    assert again == first
    assert store.in_flight() == 1


@pytest.mark.aws
def test_the_same_idempotency_key_with_another_request_is_a_conflict_not_the_first_run(store):
    store.admit(Request(), max_running=5, idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict):
        store.admit(Request(email="other@example.com"), max_running=5, idempotency_key="k-1")
    assert store.in_flight() == 1


@pytest.mark.aws
def test_same_idempotency_key_returns_the_run_even_when_slots_are_full(store):
    first = store.admit(Request(), max_running=1, idempotency_key="k-1")
    assert store.admit(Request(), max_running=1, idempotency_key="k-1") == first


@pytest.mark.aws
def test_get_unknown_or_malformed_ids_is_none(store):
    assert store.get(run_id_for(None)) is None
    assert store.get("#slots") is None
    assert store.get("../etc") is None


@pytest.mark.aws
def test_transitions_move_forward_and_duplicates_are_no_ops(store):
    run = store.admit(Request(), max_running=2)
    assert store.transition(run.run_id, Status.PLANNED, plan_summary="lightgbm", plan={"task": "binary"})
    assert not store.transition(run.run_id, Status.PLANNED)
    assert store.transition(run.run_id, Status.RUNNING)
    assert not store.transition(run.run_id, Status.PLANNED)
    stored = store.get(run.run_id)
    assert stored.status is Status.RUNNING
    assert stored.plan == {"task": "binary"} and stored.plan_summary == "lightgbm"
    assert set(stored.timestamps) == {"QUEUED", "PLANNED", "RUNNING"}


@pytest.mark.aws
def test_no_transition_after_a_terminal_status(store):
    run = store.admit(Request(), max_running=2)
    assert store.fail(run.run_id, "rules not accepted")
    assert not store.transition(run.run_id, Status.SUCCEEDED)
    assert not store.fail(run.run_id, "again")
    stored = store.get(run.run_id)
    assert stored.status is Status.FAILED and stored.error == "rules not accepted"


@pytest.mark.aws
def test_transition_of_unknown_run_is_false(store):
    assert not store.transition(run_id_for(None), Status.PLANNED)
    assert not store.fail(run_id_for(None), "x")


@pytest.mark.aws
@pytest.mark.parametrize("terminal", [Status.SUCCEEDED, Status.FAILED])
def test_terminal_transition_gives_the_slot_back_exactly_once(store, terminal):
    run = store.admit(Request(), max_running=1)
    store.transition(run.run_id, Status.RUNNING)
    assert store.transition(run.run_id, terminal)
    assert store.in_flight() == 0
    assert not store.get(run.run_id).slot_held
    assert not store.release_slot(run.run_id)
    assert not store.transition(run.run_id, terminal)
    assert store.in_flight() == 0
    store.admit(Request(), max_running=1)  # the slot is usable again


@pytest.mark.aws
def test_release_slot_refuses_for_a_run_still_in_flight(store):
    run = store.admit(Request(), max_running=1)
    assert not store.release_slot(run.run_id)
    assert store.in_flight() == 1


@pytest.mark.aws
def test_cv_score_round_trips_as_float_and_record_works_after_terminal(store):
    run = store.admit(Request(), max_running=1)
    store.transition(run.run_id, Status.VALIDATED, cv_score=0.8123, metric="accuracy", s3_key="runs/x/submission.csv")
    store.transition(run.run_id, Status.SUCCEEDED)
    store.record(run.run_id, email_error="MessageRejected: Email address is not verified.")
    stored = store.get(run.run_id)
    assert stored.cv_score == pytest.approx(0.8123)
    assert isinstance(stored.cv_score, float)
    assert stored.email_error.startswith("MessageRejected")
    assert stored.seconds_between(Status.QUEUED, Status.SUCCEEDED) == 2.0


@pytest.mark.aws
def test_record_rejects_unknown_attributes(store):
    run = store.admit(Request(), max_running=1)
    with pytest.raises(ValueError, match="status"):
        store.record(run.run_id, status="SUCCEEDED")


@pytest.mark.aws
def test_fifty_concurrent_admissions_with_ten_slots_admit_exactly_ten(table):
    store = RunStore(table)
    admitted: list[Run] = []
    refused: list[AdmissionRefused] = []
    barrier = threading.Barrier(50)

    def attempt():
        barrier.wait()
        try:
            admitted.append(store.admit(Request(), max_running=10))
        except AdmissionRefused as error:
            refused.append(error)

    with serialized_dynamodb():
        threads = [threading.Thread(target=attempt) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(admitted) == 10 and len(refused) == 40
    assert store.in_flight() == 10
    assert len({r.run_id for r in admitted}) == 10


@pytest.mark.aws
def test_any_sequence_of_transitions_and_releases_keeps_order_and_the_slot_count(table):
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415

    store = RunStore(table, sleep=lambda _s: None)
    steps = st.lists(st.one_of(st.sampled_from(list(Status)), st.just("release")), max_size=8)

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(steps)
    def check(sequence):
        run = store.admit(Request(), max_running=1000)
        model = Status.QUEUED  # what the store must hold: only forward, never out of a terminal status
        for step in sequence:
            if step == "release":
                assert store.release_slot(run.run_id) is False  # a terminal transition already gave it back
            else:
                assert store.transition(run.run_id, step) == model.can_move_to(step)
                model = step if model.can_move_to(step) else model
        stored = store.get(run.run_id)
        assert stored.status is model
        assert stored.slot_held == (not model.is_terminal)
        assert set(stored.timestamps) <= {s.value for s in Status}
        assert store.in_flight() == sum(1 for r in table.scan()["Items"] if r.get("slot_held"))

    check()


@pytest.mark.aws
def test_the_same_key_from_two_callers_gives_two_runs_each_returned_only_to_its_caller(table):
    store = RunStore(table)
    alice = "arn:aws:iam::123456789012:user/alice"
    mallory = "arn:aws:iam::123456789012:user/mallory"
    results: dict[str, list[Run]] = {alice: [], mallory: []}

    def attempt(caller: str) -> None:
        results[caller].append(store.admit(Request(), max_running=10, idempotency_key="shared-key", caller=caller))

    with serialized_dynamodb():
        threads = [threading.Thread(target=attempt, args=(c,)) for c in [alice, mallory] * 5]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len({run.run_id for run in results[alice]}) == len({run.run_id for run in results[mallory]}) == 1
    assert results[alice][0].run_id != results[mallory][0].run_id
    assert store.in_flight() == 2
    assert store.get(results[alice][0].run_id).idempotency_caller == alice
