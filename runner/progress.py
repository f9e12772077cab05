"""Live progress of a run: where it is (phase, candidate k of n and its name), the best CV so far, time spent and left.

`Progress` is the pipeline's progress callback (`RunOptions.progress`): the pipeline calls it with an event name and
fields; it keeps a `snapshot()` (a small JSON-able dict) and hands each changed snapshot to its sinks. Sinks:

- `RunProgressWriter` stores the snapshot on the run item (`progress`), throttled (at most one write per
  `min_interval_s`; what arrives in between waits for the next allowed write or `flush`) and conditional: the store
  refuses once the run is terminal, and the writer stops for good then.
- `line_sink` prints one plain line per change (logs, notebooks, pipes); `runner.__main__` uses a `rich` display on a
  terminal instead.

Stdlib only: the Lambda side never imports it, the CLI imports it before pandas.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

Snapshot = dict[str, Any]
Sink = Callable[[Snapshot], None]

# Phase names a user sees (GET /runs/{id}, the demo, the CLI), in the order a run goes through them.
PHASES = (
    "starting",
    "downloading",
    "profiling",
    "preparing",
    "training",
    "codegen",
    "blending",
    "validating",
    "reporting",
    "submitting",
    "uploading",
)
_AFTER_TRAINING = frozenset({"blending", "validating", "reporting", "submitting", "uploading"})
DEFAULT_MIN_INTERVAL_S = 15.0  # at most four writes a minute


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def round_score(value: float | None, digits: int = 5) -> float | None:
    """A score as people read it: 5 significant digits (0.912345678 -> 0.91235, 1234.5678 -> 1234.6)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


class Progress:
    """The run's progress, updated by events; every change goes to the sinks as a fresh snapshot.

    Events (the pipeline's vocabulary): `phase` (phase=...), `candidate` (index, total, name: training starts),
    `scored` (name, cv_score, metric, higher_is_better), `chosen` (chosen: the selected evaluation, maybe a blend).
    Other events (`prepared`: for the report) are ignored here.
    """

    def __init__(
        self,
        *,
        budget_s: float | None = None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], str] = _now_iso,
        sinks: tuple[Sink, ...] = (),
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = clock() if started is None else started
        self._budget_s = budget_s
        self._sinks = list(sinks)
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"phase": "starting"}
        self._best: float | None = None
        self._training_started: float | None = None

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    # -- events ------------------------------------------------------------------------------------------------------

    def __call__(self, event: str, **fields: Any) -> None:
        handler = getattr(self, f"_on_{event}", None)
        if handler is None:
            return
        with self._lock:
            changed = handler(**fields)
            snapshot = self._snapshot() if changed else None
        if snapshot is not None:
            for sink in list(self._sinks):
                sink(snapshot)

    def phase(self, name: str, detail: str | None = None) -> None:
        self("phase", phase=name, detail=detail)

    def _on_phase(self, phase: str, detail: str | None = None, **_: Any) -> bool:
        if phase == self._state.get("phase") and detail == self._state.get("detail"):
            return False
        kept = {k: v for k, v in self._state.items() if k in ("best_cv", "best_model", "metric")}
        self._state = {"phase": phase, **kept}
        if detail:
            self._state["detail"] = detail
        return True

    def _on_candidate(self, index: int, total: int, name: str, **_: Any) -> bool:
        if self._training_started is None:
            self._training_started = self._clock()
        self._state.update(phase="training", candidate=int(index), candidates=int(total), candidate_name=str(name))
        self._state.pop("detail", None)
        return True

    def _on_scored(
        self,
        name: str,
        cv_score: Any,
        metric: str | None = None,
        higher_is_better: bool | None = None,
        **_: Any,
    ) -> bool:
        score = _finite(cv_score)
        if metric:
            self._state["metric"] = metric
        if score is None:
            return False
        better = self._best is None or (score > self._best if higher_is_better else score < self._best)
        if higher_is_better is None:
            better = self._best is None
        if better:
            self._best = score
            self._state.update(best_cv=round_score(score), best_model=str(name))
        return better

    def _on_chosen(self, chosen: Any, **_: Any) -> bool:
        """The selection (a single model or a blend) is what the run delivers: its score is the one to show."""
        score = _finite(getattr(chosen, "cv_score", None))
        if score is None:
            return False
        self._best = score
        self._state.update(best_cv=round_score(score), best_model=str(getattr(chosen, "name", "?")))
        return True

    # -- reading -----------------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> Snapshot:
        elapsed = max(0.0, self._clock() - self._started)
        snapshot: Snapshot = dict(self._state)
        snapshot["elapsed_s"] = round(elapsed)
        remaining = self._remaining(elapsed)
        if remaining is not None:
            snapshot["remaining_s"] = round(remaining)
        snapshot["updated_at"] = self._wall_clock()
        return snapshot

    def _remaining(self, elapsed: float) -> float | None:
        """Seconds left: the budget's rest, or less once the candidates done so far show the pace."""
        if self._budget_s is None:
            return None
        left = max(0.0, self._budget_s - elapsed)
        if self._state.get("phase") in _AFTER_TRAINING:  # what is left is writing, checking and uploading
            return min(left, 0.05 * self._budget_s)
        index, total = self._state.get("candidate"), self._state.get("candidates")
        if self._state.get("phase") == "training" and self._training_started and index and total and index > 1:
            per_candidate = (self._clock() - self._training_started) / (index - 1)
            left = min(left, per_candidate * (total - index + 1) + 0.1 * self._budget_s)
        return left


def line_sink(write: Callable[[str], None]) -> Sink:
    """One plain line per change of phase or candidate (not per change of time): for logs, pipes and notebooks."""
    last: dict[str, Any] = {}

    def sink(snapshot: Snapshot) -> None:
        key = (snapshot.get("phase"), snapshot.get("candidate"), snapshot.get("best_cv"))
        if last.get("key") == key:
            return
        last["key"] = key
        write(describe(snapshot))

    return sink


def describe(snapshot: Mapping[str, Any]) -> str:
    """`training 2/5 lightgbm_gbdt · best auc 0.91235 (linear) · 42 s elapsed, ~1 min left`."""
    parts = [str(snapshot.get("phase", "?"))]
    if snapshot.get("phase") == "training" and snapshot.get("candidate"):
        parts[0] += f" {snapshot['candidate']}/{snapshot.get('candidates', '?')} {snapshot.get('candidate_name', '')}"
    elif snapshot.get("detail"):
        parts[0] += f" ({snapshot['detail']})"
    if snapshot.get("best_cv") is not None:
        metric = f" {snapshot['metric']}" if snapshot.get("metric") else ""
        parts.append(f"best{metric} {snapshot['best_cv']} ({snapshot.get('best_model', '?')})")
    timing = f"{snapshot.get('elapsed_s', 0)} s elapsed"
    if snapshot.get("remaining_s") is not None:
        timing += f", ~{format_seconds(snapshot['remaining_s'])} left"
    parts.append(timing)
    return " · ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    return f"{round(seconds / 60)} min"


class ProgressStore(Protocol):
    """What the writer needs of chalicelib.runs.RunStore."""

    def record_progress(self, run_id: str, progress: Mapping[str, Any]) -> bool: ...


class RunProgressWriter:
    """A sink storing snapshots on the run item: throttled, conditional, and never fatal to the run."""

    def __init__(
        self,
        store: ProgressStore,
        run_id: str,
        *,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[..., None] | None = None,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._log = log or (lambda *args, **kwargs: None)
        self._lock = threading.Lock()
        self._last_write: float | None = None
        self._pending: Snapshot | None = None
        self.closed = False  # the run is terminal (or the store keeps failing): no more writes
        self.writes = 0
        self._failures = 0

    def __call__(self, snapshot: Snapshot) -> None:
        with self._lock:
            if self.closed:
                return
            now = self._clock()
            if self._last_write is not None and now - self._last_write < self._min_interval_s:
                self._pending = snapshot
                return
            self._write(snapshot, now)

    def flush(self, *, force: bool = False) -> None:
        """Write what waits: once the interval has passed, or now with `force` (the run's last progress)."""
        with self._lock:
            if self.closed or self._pending is None:
                return
            now = self._clock()
            if force or self._last_write is None or now - self._last_write >= self._min_interval_s:
                self._write(self._pending, now)

    def _write(self, snapshot: Snapshot, now: float) -> None:
        self._pending = None
        self._last_write = now
        try:
            stored = self._store.record_progress(self._run_id, snapshot)
        except Exception as error:  # progress is a nicety: a throttled or unreachable table must not stop the run
            self._failures += 1
            self._log(f"progress not stored: {type(error).__name__}: {error}", level="warning")
            if self._failures >= 5:
                self.closed = True
            return
        if not stored:
            self.closed = True
            self._log("progress no longer stored: the run is terminal")
            return
        self.writes += 1


class Heartbeat:
    """Flushes a writer's pending snapshot every `every_s` seconds (a daemon thread), so the last change of a long
    stage reaches the run item even when no further event comes."""

    def __init__(self, writer: RunProgressWriter, progress: Progress, every_s: float) -> None:
        self._writer = writer
        self._progress = progress
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            self._writer(self._progress.snapshot())  # fresh elapsed and remaining; throttled like any change
            self._writer.flush()
