"""A CV score that knows its metric's direction, so that "the best" is `max(...)` whatever the metric.

`Score(value, higher_is_better)` orders by how good the value is, not by how large: for a lower-is-better metric
(rmse, logloss) 0.3 > 0.5. A value that is missing, NaN or infinite is a failed score: worse than every valid one and
equal to any other failed one (the rule `Metric.better` has always followed), so a candidate that failed never wins
and never needs a special case. Comparing scores of opposite directions raises TypeError: they measure different
things. Ties keep their order under `max`, `min` and `sorted` (Python returns the first of equal items), which is
what the selection's tie rules build on.

The direction of a metric comes from its name (`for_metric`), from the one table that defines it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from runner.metrics import get_metric  # names and aliases resolved; directions from chalicelib.vocabulary


@dataclass(frozen=True, eq=False)
class Score:
    """A metric value with its direction; `a > b` means `a` is the better score (see the module docstring)."""

    value: float | None
    higher_is_better: bool

    @classmethod
    def failed(cls, higher_is_better: bool) -> Score:
        """The score of a candidate that produced none: worse than anything."""
        return cls(None, higher_is_better)

    @property
    def valid(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    @property
    def goodness(self) -> float:
        """The value turned so that larger is better; -inf for a failed score."""
        if not self.valid:
            return -math.inf
        assert self.value is not None
        return float(self.value) if self.higher_is_better else -float(self.value)

    def _rank(self, other: object) -> tuple[float, float]:
        if not isinstance(other, Score):
            raise TypeError(f"cannot compare a Score with {type(other).__name__}")
        if other.higher_is_better != self.higher_is_better:
            raise TypeError("cannot compare scores of metrics with opposite directions")
        return self.goodness, other.goodness

    def __gt__(self, other: object) -> bool:
        mine, theirs = self._rank(other)
        return mine > theirs

    def __ge__(self, other: object) -> bool:
        mine, theirs = self._rank(other)
        return mine >= theirs

    def __lt__(self, other: object) -> bool:
        mine, theirs = self._rank(other)
        return mine < theirs

    def __le__(self, other: object) -> bool:
        mine, theirs = self._rank(other)
        return mine <= theirs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Score) or other.higher_is_better != self.higher_is_better:
            return NotImplemented
        return self.goodness == other.goodness

    def __hash__(self) -> int:
        return hash((self.goodness, self.higher_is_better))

    def __str__(self) -> str:
        arrow = "↑" if self.higher_is_better else "↓"
        return f"{self.value:.5f}{arrow}" if self.valid else f"failed{arrow}"


def scorer(metric: str) -> Callable[[float | None], Score]:
    """A function that turns values of the metric called `metric` (its name or an alias; InputError if unknown) into
    Scores."""
    direction = get_metric(metric).higher_is_better
    return lambda value: Score(None if value is None else float(value), direction)


def for_metric(metric: str, value: float | None) -> Score:
    """`value` as a Score of the metric called `metric`."""
    return scorer(metric)(value)
