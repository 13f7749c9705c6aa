"""Waiting out an outage: exponential backoff with jitter, cut short by the stop signal; the runtime's one retry helper.

The database writer, the start-up wait for the database, the dead-letter sink and the alert outbox all back off
with `Backoff`; the first three retry a call with `retry` (tenacity underneath). The outbox keeps its schedule in
the database instead (each delivery's next attempt), so it only takes the delays.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from pipeline.errors import ShutdownRequested

T = TypeVar("T")

# Each wait is drawn between half and all of its step ("equal jitter"): lines restarted together after an outage
# spread their retries instead of hitting the database or broker in step, and none waits less than half the step.
JITTER = 0.5


@dataclass(frozen=True)
class Backoff:
    """Steps doubling from `initial_s` up to `max_s`; each wait is its step less a random share of up to `jitter`,
    so `max_s` stays the longest wait."""

    initial_s: float
    max_s: float
    jitter: float = JITTER

    def step_s(self, attempt: int) -> float:
        """The step after the `attempt`-th failure in a row (1 for the first), before jitter."""
        # The exponent is bounded: a webhook down for a day reaches attempt 1,500, and 2**1500 overflows a float.
        return min(self.initial_s * 2 ** min(max(attempt, 1) - 1, 32), self.max_s)

    def delay_s(self, attempt: int) -> float:
        """The wait after the `attempt`-th failure in a row: in ((1 - jitter) * step, step]."""
        return self.step_s(attempt) * (1.0 - self.jitter * random.random())

    def __call__(self, state: RetryCallState) -> float:
        """tenacity's wait strategy."""
        return self.delay_s(state.attempt_number)


def retry(
    attempt: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    stop: threading.Event,
    stopped: str,
    on_retry: Callable[[BaseException, float], None],
) -> T:
    """`attempt()` until it returns. A failure that `transient` accepts is reported as `on_retry(error, wait_s)` and
    tried again after the wait; any other is raised as it is. `stop` set during a wait ends it at once with
    ShutdownRequested(`stopped`), chained to the last failure; no attempt starts after it."""
    last: list[BaseException] = []

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        assert error is not None and state.upcoming_sleep is not None  # tenacity sleeps only after a failure
        last[:] = [error]
        on_retry(error, state.upcoming_sleep)

    def wait(seconds: float) -> None:
        if stop.wait(seconds):
            raise ShutdownRequested(stopped) from last[0]

    retrying = Retrying(
        retry=retry_if_exception(transient), wait=backoff, sleep=wait, before_sleep=report, reraise=True
    )
    return retrying(attempt)
