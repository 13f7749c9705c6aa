"""The alert outbox: pending deliveries written in the batch transaction, sent from here with retries and backoff.

A dispatcher thread drains it while the consumer runs; `flush_outbox` delivers what is left after it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerting.channels import Channel, build_channels
from pipeline.metrics import ConsumerMetrics
from pipeline.retry import Backoff
from pipeline.settings import Settings
from pipeline.storage.tables import Alert, AlertDelivery

log = logging.getLogger(__name__)


def deliver_due(
    sessions: sessionmaker[Session],
    channels: list[Channel],
    retry_initial_s: float,
    retry_max_s: float,
    limit: int = 50,
    lease_s: float = 60.0,
) -> int:
    """Try due pending deliveries once each, up to `limit`; returns how many were delivered. Failures get a later
    attempt.

    Each delivery is claimed in a short transaction (its next attempt moved `lease_s` ahead, so no other dispatcher
    takes it), sent with no transaction open, then marked in another. No database lock is held during a network
    call (on SQLite that lock would stall the batch writer), and a process killed mid-round re-sends at most the one
    alert it was sending when its lease runs out, not every alert of the round.
    """
    by_name = {channel.name: channel for channel in channels}
    backoff = Backoff(retry_initial_s, retry_max_s)
    delivered = 0
    tried: list[int] = []  # once per round, even when a short backoff makes a failed one due again meanwhile
    for _ in range(limit):
        claim = _claim_one(sessions, list(by_name), lease_s, tried)
        if claim is None:
            break
        tried.append(claim.delivery_id)
        try:
            by_name[claim.channel].send(claim.alert_id, claim.payload)
        except Exception as exc:  # any channel failure: keep it pending and back off
            delay = backoff.delay_s(claim.attempts)
            error = f"{type(exc).__name__}: {exc}"[:500]
            _settle(sessions, claim.delivery_id, "pending", datetime.now(UTC) + timedelta(seconds=delay), error)
            log.warning(
                "alert %d via %s failed (attempt %d, next in %.1fs): %s",
                claim.alert_id,
                claim.channel,
                claim.attempts,
                delay,
                error,
            )
            continue
        _settle(sessions, claim.delivery_id, "delivered", None, None)
        delivered += 1
    return delivered


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    channel: str
    alert_id: int
    payload: dict[str, Any]
    attempts: int  # including this one


def _claim_one(
    sessions: sessionmaker[Session], channels: list[str], lease_s: float, exclude: list[int]
) -> _Claim | None:
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        # SKIP LOCKED (PostgreSQL): two dispatchers claiming at once take different rows.
        row = session.execute(
            select(AlertDelivery, Alert)
            .join(Alert, Alert.id == AlertDelivery.alert_id)
            .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
            .where(AlertDelivery.channel.in_(channels), AlertDelivery.id.notin_(exclude))
            .order_by(AlertDelivery.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=AlertDelivery)
        ).first()
        if row is None:
            return None
        delivery, alert = row
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=lease_s)
        return _Claim(delivery.id, delivery.channel, alert.id, dict(alert.payload), delivery.attempts)


def _settle(
    sessions: sessionmaker[Session], delivery_id: int, status: str, next_attempt_at: datetime | None, error: str | None
) -> None:
    with sessions() as session, session.begin():
        delivery = session.get(AlertDelivery, delivery_id)
        if delivery is None:
            return  # its alert was deleted meanwhile
        delivery.status = status
        if status == "delivered":
            delivery.delivered_at = datetime.now(UTC)
        else:
            delivery.next_attempt_at = next_attempt_at or datetime.now(UTC)
            delivery.last_error = error


def outbox_backlog(sessions: sessionmaker[Session], channels: list[str]) -> dict[str, tuple[int, float]]:
    """Per channel: (pending deliveries, age in seconds of the oldest pending alert); (0, 0.0) when none waits."""
    with sessions() as session:
        rows = session.execute(
            select(AlertDelivery.channel, func.count(), func.min(Alert.created_at))
            .join(Alert, Alert.id == AlertDelivery.alert_id)
            .where(AlertDelivery.status == "pending", AlertDelivery.channel.in_(channels))
            .group_by(AlertDelivery.channel)
        ).all()
    now = datetime.now(UTC)
    backlog = dict.fromkeys(channels, (0, 0.0))
    for channel, pending, oldest in rows:
        oldest_utc = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)  # SQLite returns naive UTC
        backlog[channel] = (int(pending), max(0.0, (now - oldest_utc).total_seconds()))
    return backlog


class AlertDispatcher:
    """A daemon thread that drains the outbox every `poll_s` seconds; `stop` drains once more, bounded, then closes
    the channels. With `metrics`, each round also publishes the backlog per channel.

    No exception ends the thread: a round that fails is logged and the next one comes after a backoff, since a
    dead dispatcher would leave every later alert in the outbox, unsent, for the life of the consumer.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: list[Channel],
        settings: Settings,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.sessions = sessions
        self.channels = channels
        self.settings = settings
        self.metrics = metrics
        self.delivered = 0
        self.failed_rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-dispatcher", daemon=True)

    def start(self) -> AlertDispatcher:
        if self.channels:
            self._thread.start()
        return self

    def _run(self) -> None:
        failures = 0  # rounds failed in a row
        backoff = Backoff(self.settings.alert_retry_initial_s, self.settings.alert_retry_max_s)
        while not self._stop.is_set():
            failures = 0 if self.drain_once() is not None else failures + 1
            pause = self.settings.alert_poll_s
            if failures:
                pause = max(pause, backoff.delay_s(failures))
            self._stop.wait(pause)

    def drain_once(self) -> int | None:
        """One round: deliver what is due, then publish the backlog. Returns how many were delivered, or None when
        the round failed (logged; the deliveries stay pending). Never raises."""
        try:
            count = deliver_due(
                self.sessions, self.channels, self.settings.alert_retry_initial_s, self.settings.alert_retry_max_s
            )
            self.delivered += count
            if self.metrics is not None:
                backlog = outbox_backlog(self.sessions, [c.name for c in self.channels])
                for channel, (pending, oldest_s) in backlog.items():
                    self.metrics.observe_outbox(channel, pending, oldest_s)
        except SQLAlchemyError as exc:  # database down: the outbox waits, nothing is lost
            log.warning("alert outbox unavailable: %s", type(exc).__name__)
        except Exception:  # anything else is a bug or a surprise: keep its traceback, keep the thread
            log.exception("alert dispatcher round failed; the outbox keeps its deliveries for the next round")
        else:
            return count
        self.failed_rounds += 1
        return None

    def stop(self, drain_timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=drain_timeout_s + self.settings.webhook_timeout_s)
        try:
            deadline = time.monotonic() + drain_timeout_s
            while self.channels and time.monotonic() < deadline and self.drain_once():
                pass
        finally:
            for channel in self.channels:
                channel.close()


def flush_outbox(settings: Settings, timeout_s: float = 10.0) -> int:
    """Deliver what the outbox still holds (e.g. after the consumer stopped); returns how many were delivered.

    Stops when nothing due is left or after `timeout_s`; undelivered alerts stay pending for the next run.
    """
    from pipeline.storage.engine import open_database

    producer = None

    def make_producer() -> Any:
        nonlocal producer
        from kafka import KafkaProducer

        producer = KafkaProducer(**settings.producer_options(), acks="all")
        return producer

    engine, sessions = open_database(settings.db_url)
    channels = build_channels(settings, make_producer)
    delivered = 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            count = deliver_due(sessions, channels, settings.alert_retry_initial_s, settings.alert_retry_max_s)
            delivered += count
            if not _pending(sessions, [c.name for c in channels]):
                break
            if not count:
                time.sleep(min(settings.alert_poll_s, max(0.0, deadline - time.monotonic())))
    finally:
        for channel in channels:
            channel.close()
        if producer is not None:
            producer.close(timeout=5)
        engine.dispose()
    return delivered


def _pending(sessions: sessionmaker[Session], channels: list[str]) -> bool:
    with sessions() as session:
        query = select(AlertDelivery.id).where(AlertDelivery.status == "pending", AlertDelivery.channel.in_(channels))
        return session.execute(query.limit(1)).first() is not None
