"""The one retry helper: backoff with jitter under a ceiling, transient failures retried, others raised at once, the
stop signal ending a wait promptly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from pipeline.errors import ShutdownRequested
from pipeline.retry import JITTER, Backoff, retry


def test_waits_double_up_to_the_ceiling_and_jitter_only_shortens_them() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.step_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for attempt in (1, 3, 10, 10_000):
        delays = [backoff.delay_s(attempt) for _ in range(2000)]
        step = backoff.step_s(attempt)
        assert all(step * (1 - JITTER) < d <= step for d in delays)
        assert max(delays) - min(delays) > step * JITTER / 2  # spread, not a constant


class Outage(Exception):
    pass


def flaky(failures: int, error: Exception | None = None) -> tuple[list[float], Callable[[], str]]:
    calls: list[float] = []

    def attempt() -> str:
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise error or Outage(f"down ({len(calls)})")
        return "done"

    return calls, attempt


def test_transient_failures_are_retried_and_reported_with_their_wait() -> None:
    calls, attempt = flaky(3)
    reported: list[tuple[str, float]] = []
    result = retry(
        attempt,
        transient=lambda exc: isinstance(exc, Outage),
        backoff=Backoff(0.01, 0.02),
        stop=threading.Event(),
        stopped="stopped",
        on_retry=lambda exc, wait_s: reported.append((str(exc), wait_s)),
    )
    assert result == "done" and len(calls) == 4
    assert [message for message, _ in reported] == ["down (1)", "down (2)", "down (3)"]
    assert all(0.0 < wait_s <= 0.02 for _, wait_s in reported)


def test_any_other_failure_is_raised_as_it_is_without_a_retry() -> None:
    calls, attempt = flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        retry(
            attempt,
            transient=lambda exc: isinstance(exc, Outage),
            backoff=Backoff(0.01, 0.02),
            stop=threading.Event(),
            stopped="stopped",
            on_retry=lambda exc, wait_s: None,
        )
    assert len(calls) == 1


def test_the_stop_signal_ends_a_long_wait_at_once_and_no_attempt_follows() -> None:
    calls, attempt = flaky(99)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ShutdownRequested, match="stopped while down") as raised:
        retry(
            attempt,
            transient=lambda exc: isinstance(exc, Outage),
            backoff=Backoff(30.0, 60.0),
            stop=stop,
            stopped="stopped while down",
            on_retry=lambda exc, wait_s: None,
        )
    assert time.monotonic() - started < 5  # not the 15-30 s wait
    assert len(calls) == 1 and isinstance(raised.value.__cause__, Outage)
