"""chalicelib.retry: one bounded retry loop with full jitter, run on a fake clock (no real sleeping)."""

from __future__ import annotations

import random

import pytest

from chalicelib.retry import Backoff, GaveUp, UniformFrom, retry_call
from tests.fake_clock import FakeClock


class Flaky(Exception):
    pass


class Broken(Exception):
    pass


def failing(times: int, error: type[Exception] = Flaky, value: str = "ok"):
    calls: list[float] = []

    def call() -> str:
        calls.append(0.0)
        if len(calls) <= times:
            raise error(f"failure {len(calls)}")
        return value

    return call, calls


MAX = UniformFrom(lambda: 1.0)  # always the ceiling: delays are exact


def run(call, backoff: Backoff, clock: FakeClock, **kwargs):
    return retry_call(
        call,
        backoff=backoff,
        retryable=lambda e: isinstance(e, Flaky),
        sleep=clock.sleep,
        clock=clock,
        rng=kwargs.pop("rng", MAX),
        **kwargs,
    )


def test_it_returns_the_first_success_after_sleeping_growing_delays() -> None:
    clock = FakeClock(100.0)
    call, calls = failing(3)
    assert run(call, Backoff(attempts=5, base_s=1.0, cap_s=30.0), clock) == "ok"
    assert len(calls) == 4 and clock.sleeps == [1.0, 2.0, 4.0]


def test_delays_are_capped() -> None:
    clock = FakeClock(100.0)
    call, _ = failing(5)
    run(call, Backoff(attempts=10, base_s=1.0, cap_s=3.0), clock)
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_full_jitter_spreads_each_delay_over_zero_to_its_ceiling() -> None:
    backoff = Backoff(attempts=9, base_s=1.0, cap_s=5.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (8, 5.0)]:
        delays = [backoff.delay(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert min(delays) < ceiling / 4 and max(delays) > ceiling * 3 / 4


def test_it_gives_up_after_the_attempt_cap_without_a_last_sleep() -> None:
    clock = FakeClock(100.0)
    call, calls = failing(99)
    with pytest.raises(GaveUp) as gave:
        run(call, Backoff(attempts=3, base_s=1.0, cap_s=30.0), clock)
    assert len(calls) == 3 and clock.sleeps == [1.0, 2.0]
    assert gave.value.attempts == 3 and gave.value.out_of_attempts and not gave.value.out_of_time
    assert isinstance(gave.value.last, Flaky) and gave.value.__cause__ is gave.value.last


def test_it_gives_up_before_a_sleep_that_would_reach_the_total_time_cap() -> None:
    clock = FakeClock(100.0)
    call, calls = failing(99)
    with pytest.raises(GaveUp) as gave:
        run(call, Backoff(attempts=10, base_s=4.0, cap_s=4.0, total_s=10.0), clock)
    assert len(calls) == 3 and clock.sleeps == [4.0, 4.0]  # at 0 s, 4 s, 8 s; a third wait would reach 12 s
    assert gave.value.out_of_time and not gave.value.out_of_attempts
    assert clock.now - 100.0 <= 10.0


def test_an_absolute_deadline_caps_time_too() -> None:
    clock = FakeClock(100.0)
    call, calls = failing(99)
    with pytest.raises(GaveUp) as gave:
        run(call, Backoff(attempts=50, base_s=10.0, cap_s=10.0), clock, deadline=clock.now + 5)
    assert len(calls) == 1 and clock.sleeps == [] and gave.value.out_of_time


def test_time_spent_in_the_calls_counts_against_the_cap() -> None:
    clock = FakeClock(100.0)
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        clock.now += 6.0  # each call takes 6 s
        raise Flaky("slow")

    with pytest.raises(GaveUp):
        run(slow, Backoff(attempts=10, base_s=1.0, cap_s=1.0, total_s=10.0), clock)
    assert len(calls) == 2  # 0-6 s, sleep 1 s, 7-13 s: no third call


def test_an_error_the_predicate_refuses_is_raised_at_once() -> None:
    clock = FakeClock(100.0)
    call, calls = failing(5, error=Broken)
    with pytest.raises(Broken, match="failure 1"):
        run(call, Backoff(attempts=5, base_s=1.0, cap_s=30.0), clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_base_exceptions_are_never_swallowed() -> None:
    clock = FakeClock(100.0)

    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retry_call(interrupted, backoff=Backoff(3, 1.0, 1.0), retryable=lambda e: True, sleep=clock.sleep, clock=clock)


def test_min_delay_raises_a_sleep_to_what_the_error_asks() -> None:
    clock = FakeClock(100.0)
    call, _ = failing(2)
    zero = UniformFrom(lambda: 0.0)
    run(call, Backoff(attempts=5, base_s=1.0, cap_s=30.0), clock, rng=zero, min_delay=lambda e: 2.5)
    assert clock.sleeps == [2.5, 2.5]


def test_on_retry_hears_each_retry_before_its_sleep() -> None:
    clock = FakeClock(100.0)
    heard: list[tuple[int, str, float, int]] = []
    call, _ = failing(2)
    run(
        call,
        Backoff(attempts=5, base_s=1.0, cap_s=30.0),
        clock,
        on_retry=lambda attempt, error, delay: heard.append((attempt, str(error), delay, len(clock.sleeps))),
    )
    assert heard == [(1, "failure 1", 1.0, 0), (2, "failure 2", 2.0, 1)]


def test_the_kaggle_download_policy_keeps_its_delays_and_caps() -> None:
    from runner.kaggle_client import RetryPolicy  # noqa: PLC0415

    policy = RetryPolicy()
    assert policy.backoff == Backoff(attempts=5, base_s=2.0, cap_s=60.0, total_s=600.0)
    assert [policy.backoff.ceiling(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [2, 4, 8, 16, 32, 60, 60]


def test_the_llm_client_keeps_its_delays_and_caps() -> None:
    from chalicelib.llm import LLMClient, LLMConfig  # noqa: PLC0415

    client = LLMClient(LLMConfig(model="m", api_key="k"))
    assert client.backoff == Backoff(attempts=5, base_s=1.0, cap_s=30.0)  # the first call and 4 retries


def test_the_run_store_keeps_its_delays_and_caps() -> None:
    from chalicelib.runs import CONFLICT_BACKOFF  # noqa: PLC0415

    assert CONFLICT_BACKOFF.base_s == 0.01 and CONFLICT_BACKOFF.cap_s == 0.5
    assert [CONFLICT_BACKOFF.ceiling(n) for n in (1, 2, 3, 7, 8)] == [0.01, 0.02, 0.04, 0.5, 0.5]


class _Canceled(Exception):
    """botocore's TransactionCanceledException as RunStore reads it."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__("Transaction cancelled")
        self.response = {"CancellationReasons": [{"Code": code} for code in codes]}


class ContendedClient:
    """A DynamoDB client whose transactions lose `conflicts` races on the slot counter, then go through."""

    class exceptions:
        TransactionCanceledException = _Canceled

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.calls = 0

    def transact_write_items(self, TransactItems: list[dict]) -> dict:
        self.calls += 1
        if self.calls <= self.conflicts:
            raise _Canceled(["None", "TransactionConflict"])
        return {}


def contended_store(conflicts: int):
    from types import SimpleNamespace  # noqa: PLC0415

    from chalicelib.runs import RunStore  # noqa: PLC0415

    client = ContendedClient(conflicts)
    sleeps: list[float] = []
    table = SimpleNamespace(name="runs", meta=SimpleNamespace(client=client))
    return RunStore(table, sleep=sleeps.append), client, sleeps


RUN_ID = "0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f"


def test_the_run_store_retries_a_contended_slot_counter_with_jittered_sleeps() -> None:
    store, client, sleeps = contended_store(conflicts=3)
    assert store.release_slot(RUN_ID) is True
    assert client.calls == 4 and len(sleeps) == 3
    assert all(0.0 <= s <= ceiling for s, ceiling in zip(sleeps, (0.01, 0.02, 0.04), strict=True))


def test_the_run_store_gives_up_after_its_attempts_as_before() -> None:
    from chalicelib.runs import Status  # noqa: PLC0415

    store, client, sleeps = contended_store(conflicts=99)
    assert store.release_slot(RUN_ID) is False
    assert client.calls == 8 and len(sleeps) == 7
    store, client, _ = contended_store(conflicts=99)
    with pytest.raises(RuntimeError, match="stayed contended"):
        store.transition(RUN_ID, Status.FAILED, error="boom")
    assert client.calls == 8
