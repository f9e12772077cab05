"""Live progress: the tracker's snapshots, the throttled and conditional writer, and RunStore.record_progress against
moto (a terminal run is never written again)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from moto import mock_aws

from chalicelib.runs import RunStore, Status
from runner.progress import Progress, RunProgressWriter, describe, line_sink, round_score
from tests.fake_clock import FakeClock
from tests.moto_env import create_runs_table, fake_credentials


class MemoryStore:
    def __init__(self, terminal_after: int | None = None, fail: bool = False) -> None:
        self.writes: list[dict[str, Any]] = []
        self.terminal_after = terminal_after
        self.fail = fail

    def record_progress(self, run_id: str, progress: Mapping[str, Any]) -> bool:
        if self.fail:
            raise RuntimeError("throttled")
        if self.terminal_after is not None and len(self.writes) >= self.terminal_after:
            return False
        self.writes.append(dict(progress))
        return True


def tracker(clock: FakeClock, *sinks: Any, budget: float = 300.0) -> Progress:
    return Progress(budget_s=budget, clock=clock, wall_clock=lambda: "2026-11-29T12:00:00Z", sinks=sinks)


def test_snapshots_say_phase_candidate_best_score_elapsed_and_remaining() -> None:
    clock = FakeClock(100.0)
    seen: list[dict[str, Any]] = []
    progress = tracker(clock, seen.append)

    progress("phase", phase="profiling")
    clock.now += 10
    progress("candidate", index=1, total=4, name="linear")
    clock.now += 20
    progress("scored", name="linear", cv_score=0.812345678, metric="roc_auc", higher_is_better=True)
    progress("candidate", index=2, total=4, name="lightgbm_gbdt")
    progress("scored", name="lightgbm_gbdt", cv_score=0.79, metric="roc_auc", higher_is_better=True)  # worse

    last = seen[-1]
    assert last["phase"] == "training"
    assert (last["candidate"], last["candidates"], last["candidate_name"]) == (2, 4, "lightgbm_gbdt")
    assert (last["best_cv"], last["best_model"], last["metric"]) == (0.81235, "linear", "roc_auc")
    assert last["elapsed_s"] == 30
    # 20 s per candidate so far, 3 to go (this one included) + 10% of the budget, below the budget's 270 s rest
    assert last["remaining_s"] == 90
    assert "training 2/4 lightgbm_gbdt" in describe(last) and "best roc_auc 0.81235 (linear)" in describe(last)


def test_lower_is_better_metrics_keep_the_lowest_score() -> None:
    progress = tracker(FakeClock(100.0))
    for name, score in (("a", 3.0), ("b", 2.0), ("c", 2.5)):
        progress("scored", name=name, cv_score=score, metric="rmse", higher_is_better=False)
    assert progress.snapshot()["best_model"] == "b"


def test_nan_scores_and_unknown_events_change_nothing() -> None:
    seen: list[dict[str, Any]] = []
    progress = tracker(FakeClock(100.0), seen.append)
    progress("scored", name="x", cv_score=float("nan"), metric="rmse", higher_is_better=False)
    progress("prepared", profile=object())
    assert seen == []
    assert "best_cv" not in progress.snapshot()


def test_the_writer_stores_at_most_one_snapshot_per_interval_and_flushes_the_last() -> None:
    clock, store = FakeClock(100.0), MemoryStore()
    writer = RunProgressWriter(store, "run", min_interval_s=15, clock=clock)
    progress = tracker(clock, writer)

    for second in range(60):  # an event every second for a minute
        clock.now += 1
        progress("candidate", index=second + 1, total=60, name=f"m{second}")

    assert len(store.writes) == 4  # 60 s / 15 s: a few writes a minute, never one per event
    assert store.writes[-1]["candidate"] < 60
    clock.now += 1
    writer.flush(force=True)
    assert store.writes[-1]["candidate"] == 60  # the last change is not lost


def test_the_writer_stops_for_good_once_the_store_says_the_run_is_terminal() -> None:
    clock, store = FakeClock(100.0), MemoryStore(terminal_after=1)
    writer = RunProgressWriter(store, "run", min_interval_s=0, clock=clock)
    progress = tracker(clock, writer)

    progress("phase", phase="training")
    progress("phase", phase="blending")  # refused: terminal
    progress("phase", phase="validating")
    writer.flush(force=True)

    assert [w["phase"] for w in store.writes] == ["training"]
    assert writer.closed


def test_a_failing_store_never_raises_into_the_run() -> None:
    clock = FakeClock(100.0)
    writer = RunProgressWriter(MemoryStore(fail=True), "run", min_interval_s=0, clock=clock)
    progress = tracker(clock, writer)
    for phase in ("profiling", "preparing", "training", "blending", "validating", "uploading"):
        progress("phase", phase=phase)
    assert writer.closed  # gave up after repeated failures


def test_plain_lines_once_per_change_of_phase_or_candidate() -> None:
    clock, lines = FakeClock(100.0), []
    progress = tracker(clock, line_sink(lines.append))
    progress("phase", phase="profiling")
    progress("phase", phase="profiling")
    progress("candidate", index=1, total=2, name="linear")
    assert len(lines) == 2
    assert lines[1].startswith("training 1/2 linear")


def test_round_score_keeps_five_significant_digits() -> None:
    assert round_score(0.912345678) == 0.91235
    assert round_score(1234.5678) == 1234.6
    assert round_score(float("inf")) is None


# -- RunStore.record_progress against moto ---------------------------------------------------------------------


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunStore]:
    fake_credentials(monkeypatch)
    with mock_aws():
        yield RunStore(create_runs_table())


class NewRun:
    url = "https://www.kaggle.com/competitions/titanic"
    slug = "titanic"
    email = "me@example.com"
    submit = True


@pytest.mark.aws
def test_progress_is_stored_on_a_live_run_and_refused_once_it_is_terminal(store: RunStore) -> None:
    run = store.admit(NewRun(), max_running=2)
    assert store.get(run.run_id).submit is True  # type: ignore[union-attr]
    store.transition(run.run_id, Status.RUNNING)

    assert store.record_progress(run.run_id, {"phase": "training", "best_cv": 0.91, "candidate": 2})
    assert store.get(run.run_id).progress == {"phase": "training", "best_cv": 0.91, "candidate": 2}  # type: ignore[union-attr]

    store.fail(run.run_id, "stopped")
    assert not store.record_progress(run.run_id, {"phase": "blending"})
    after = store.get(run.run_id)
    assert after is not None and after.status is Status.FAILED
    assert after.progress == {"phase": "training", "best_cv": 0.91, "candidate": 2}


@pytest.mark.aws
def test_progress_never_creates_a_run(store: RunStore) -> None:
    ghost = "0f0e0d0c-0b0a-4909-8807-060504030201"
    assert not store.record_progress(ghost, {"phase": "training"})
    assert store.get(ghost) is None
