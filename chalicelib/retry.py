"""One bounded retry loop: exponential backoff with full jitter, capped in attempts and in time.

`retry_call(call, backoff=..., retryable=...)` calls `call()` until it returns; an exception `retryable` refuses is
raised at once; otherwise retry number n sleeps uniformly in [0, min(cap_s, base_s * 2**(n-1))] (full jitter: callers
that failed together do not retry together), optionally no less than what the error asks (`min_delay`: a Retry-After).
It gives up with `GaveUp` (the last error chained) after `attempts` calls, or before a sleep that would reach the time
limit (`total_s` after the first call started, or an absolute `deadline` on `clock`, whichever comes first).

Sleep, clock and randomness are injected, so tests run it with a fake clock and no real waiting. Standard library only.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class Uniform(Protocol):
    """Where the jitter comes from: `random.Random` (or the `random` module) fits."""

    def uniform(self, a: float, b: float, /) -> float: ...


class UniformFrom:
    """A `Uniform` from a callable drawing in [0, 1) (`random.random`, or a constant in tests)."""

    def __init__(self, draw: Callable[[], float]) -> None:
        self._draw = draw

    def uniform(self, a: float, b: float, /) -> float:
        return a + (b - a) * self._draw()


@dataclass(frozen=True)
class Backoff:
    """How often and how long to retry: `attempts` calls in all (the first included), sleeps growing from `base_s`
    to at most `cap_s`, and no sleep that would reach `total_s` seconds after the first call started."""

    attempts: int
    base_s: float
    cap_s: float
    total_s: float | None = None

    def ceiling(self, retry: int) -> float:
        """The longest sleep before retry number `retry` (1-based)."""
        return min(self.cap_s, self.base_s * 2 ** (retry - 1))

    def delay(self, retry: int, rng: Uniform) -> float:
        """The sleep before retry number `retry` (1-based): uniform in [0, ceiling(retry)]."""
        return rng.uniform(0.0, self.ceiling(retry))


class GaveUp(Exception):
    """Retries ran out. `last` is the last error (also the __cause__), `attempts` the calls made; `out_of_time` when
    the time limit stopped it, `out_of_attempts` when that was the last attempt allowed (both may hold)."""

    def __init__(self, last: Exception, attempts: int, *, out_of_time: bool, out_of_attempts: bool) -> None:
        why = "time limit" if out_of_time else "attempt limit"
        super().__init__(f"gave up after {attempts} attempts ({why}): {last}")
        self.last = last
        self.attempts = attempts
        self.out_of_time = out_of_time
        self.out_of_attempts = out_of_attempts


def retry_call(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    retryable: Callable[[Exception], bool],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Uniform | None = None,
    deadline: float | None = None,
    min_delay: Callable[[Exception], float] | None = None,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """`call()`'s value, retried as the module docstring says. `on_retry(attempt, error, delay)` runs before each
    sleep (to log or count it)."""
    jitter = rng if rng is not None else random.Random()
    started = clock()
    limit = min(
        started + backoff.total_s if backoff.total_s is not None else math.inf,
        deadline if deadline is not None else math.inf,
    )
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as error:
            if not retryable(error):
                raise
            delay = backoff.delay(attempt, jitter)
            if min_delay is not None:
                delay = max(delay, min_delay(error))
            out_of_attempts = attempt >= backoff.attempts
            out_of_time = clock() + delay >= limit
            if out_of_attempts or out_of_time:
                raise GaveUp(error, attempt, out_of_time=out_of_time, out_of_attempts=out_of_attempts) from error
            if on_retry is not None:
                on_retry(attempt, error, delay)
            sleep(delay)
