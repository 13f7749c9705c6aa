"""The alert dispatcher on a real database: it survives any failure of a round and publishes the outbox backlog."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import frame_result, wait_for
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerting.outbox import AlertDispatcher, deliver_due
from pipeline.metrics import ConsumerMetrics
from pipeline.results import RaisedAlert
from pipeline.retry import JITTER, Backoff
from pipeline.settings import Settings
from pipeline.storage.engine import open_database
from pipeline.storage.store import ModelInfo, write_batch
from pipeline.storage.tables import AlertDelivery


class FlakyChannel:
    """Raises an exception type no channel is meant to raise, `failures` times, then delivers."""

    def __init__(self, name: str, failures: int) -> None:
        self.name = name
        self.failures = failures
        self.calls = 0
        self.sent: list[int] = []
        self.closed = False

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("unexpected")
        self.sent.append(alert_id)

    def close(self) -> None:
        self.closed = True


def seed_outbox(sessions: sessionmaker[Session], ages_s: list[float], channels: list[str]) -> None:
    """One alert per age (raised that many seconds ago), each with a pending delivery per channel."""
    frames = [frame_result(i, True) for i in range(len(ages_s))]
    now = datetime.now(UTC)
    alerts = [
        RaisedAlert(f"t:{i}", "high_score", f.camera_id, f.line_id, now - timedelta(seconds=age), {"offset": i})
        for i, (f, age) in enumerate(zip(frames, ages_s, strict=True))
    ]
    with sessions() as session, session.begin():
        write_batch(session, "g", frames, {("frames", 0): len(frames)}, alerts, channels, ModelInfo("m", "1"), 60)


def fast_settings(url: str) -> Settings:
    return Settings(database_url=url, alert_poll_s=0.02, alert_retry_initial_s=0.02, alert_retry_max_s=0.1)


@pytest.mark.integration
def test_the_dispatcher_outlives_a_channel_raising_an_unexpected_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    _, sessions = open_database(url)
    seed_outbox(sessions, [1.0], ["flaky"])
    channel = FlakyChannel("flaky", failures=2)
    dispatcher = AlertDispatcher(sessions, [channel], fast_settings(url)).start()
    try:
        wait_for(lambda: channel.sent == [1], timeout=10, what="delivery after two failures")
        assert dispatcher._thread.is_alive()
    finally:
        dispatcher.stop()
    assert channel.calls == 3 and channel.closed
    assert not dispatcher._thread.is_alive()


@pytest.mark.integration
def test_the_dispatcher_outlives_a_sessions_factory_raising_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    _, sessions = open_database(url)
    seed_outbox(sessions, [1.0], ["flaky"])
    calls = 0

    def broken_once() -> Session:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("not an SQLAlchemy error")
        return sessions()

    channel = FlakyChannel("flaky", failures=0)
    dispatcher = AlertDispatcher(broken_once, [channel], fast_settings(url))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="pipeline.alerting.outbox"):
        dispatcher.start()
        try:
            wait_for(lambda: channel.sent == [1], timeout=10, what="delivery after a failed round")
            assert dispatcher._thread.is_alive()
        finally:
            dispatcher.stop()
    assert dispatcher.failed_rounds == 1
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1 and logged[0].exc_info is not None and logged[0].exc_info[0] is KeyError


@pytest.mark.integration
def test_backlog_gauges_show_pending_deliveries_and_the_oldest_age(db_url: str) -> None:
    _, sessions = open_database(db_url)
    seed_outbox(sessions, [120.0, 60.0, 30.0], ["webhook", "log"])
    webhook, log = FlakyChannel("webhook", failures=99), FlakyChannel("log", failures=0)
    metrics = ConsumerMetrics()
    dispatcher = AlertDispatcher(sessions, [webhook, log], fast_settings(db_url), metrics=metrics)

    def sample(name: str, channel: str) -> float | None:
        return metrics.registry.get_sample_value(f"lineguard_alert_outbox_{name}", {"channel": channel})

    assert dispatcher.drain_once() == 3  # the log channel's; the webhook's stay pending
    assert sample("pending", "webhook") == 3 and sample("pending", "log") == 0
    assert sample("oldest_seconds", "webhook") == pytest.approx(120, abs=10)
    assert sample("oldest_seconds", "log") == 0

    webhook.failures = 0
    wait_for(lambda: dispatcher.drain_once() == 0 and sample("pending", "webhook") == 0, timeout=10, every=0.05)
    assert sorted(webhook.sent) == [1, 2, 3]
    assert sample("oldest_seconds", "webhook") == 0


def test_backoff_is_bounded_for_any_number_of_attempts() -> None:
    backoff = Backoff(1.0, 60.0)
    assert [backoff.step_s(n) for n in (1, 2, 3, 7, 5000)] == [1.0, 2.0, 4.0, 60.0, 60.0]
    assert all(30.0 < backoff.delay_s(5000) <= 60.0 for _ in range(1000))  # jittered below the step, never above


@pytest.mark.integration
def test_a_delivery_failing_for_days_keeps_its_backoff(tmp_path: Path) -> None:
    # Attempt 1,500 once overflowed the float delay and rolled back the whole round.
    _, sessions = open_database(f"sqlite:///{tmp_path / 'outbox.db'}")
    seed_outbox(sessions, [1.0], ["flaky"])
    with sessions() as session, session.begin():
        session.execute(update(AlertDelivery).values(attempts=5000))
    assert deliver_due(sessions, [FlakyChannel("flaky", failures=1)], 1.0, 60.0) == 0
    with sessions() as session:
        delivery = session.scalars(select(AlertDelivery)).one()
    assert delivery.attempts == 5001 and delivery.last_error == "RuntimeError: unexpected"
    delay = delivery.next_attempt_at.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(seconds=60 * (1 - JITTER) - 5) < delay <= timedelta(seconds=60)


class Killed(BaseException):
    """What a SIGKILL does to a dispatcher mid-round: nothing after this line runs (not an Exception)."""


class DyingChannel(FlakyChannel):
    """Delivers, and the process dies right after its `die_after`-th delivery, before marking it."""

    def __init__(self, name: str, die_after: int) -> None:
        super().__init__(name, failures=0)
        self.die_after = die_after

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        super().send(alert_id, payload)
        if len(self.sent) == self.die_after:
            raise Killed


@pytest.mark.integration
def test_a_dispatcher_killed_mid_round_resends_only_the_alert_it_was_sending(db_url: str) -> None:
    _, sessions = open_database(db_url)
    seed_outbox(sessions, [5.0, 4.0, 3.0, 2.0, 1.0], ["hook"])
    dying = DyingChannel("hook", die_after=3)
    with pytest.raises(Killed):
        deliver_due(sessions, [dying], 0.01, 0.1, lease_s=0.0)
    restarted = FlakyChannel("hook", failures=0)
    assert deliver_due(sessions, [restarted], 0.01, 0.1, lease_s=0.0) == 3  # its lease has run out
    received = dying.sent + restarted.sent
    assert sorted(set(received)) == sorted(received[:3] + received[4:]) and len(received) == 6
    assert received.count(received[2]) == 2  # the one alert in flight when it died: sent twice, no other
    with sessions() as session:
        assert {d.status for d in session.scalars(select(AlertDelivery))} == {"delivered"}
