"""The alert outbox: pending deliveries written in the batch transaction, sent from here with retries and backoff.

A dispatcher thread drains it while the consumer runs; `flush_outbox` delivers what is left after it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerting.channels import Channel, build_channels
from pipeline.settings import Settings
from pipeline.storage.tables import Alert, AlertDelivery

log = logging.getLogger(__name__)


def deliver_due(
    sessions: sessionmaker[Session],
    channels: list[Channel],
    retry_initial_s: float,
    retry_max_s: float,
    limit: int = 50,
) -> int:
    """Try every due pending delivery once; returns how many were delivered. Failures get a later attempt."""
    by_name = {channel.name: channel for channel in channels}
    now = datetime.now(UTC)
    delivered = 0
    with sessions() as session, session.begin():
        # SKIP LOCKED (PostgreSQL) lets several consumers share one outbox without sending an alert twice.
        rows = session.execute(
            select(AlertDelivery, Alert)
            .join(Alert, Alert.id == AlertDelivery.alert_id)
            .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
            .where(AlertDelivery.channel.in_(list(by_name)))
            .order_by(AlertDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=AlertDelivery)
        ).all()
        for delivery, alert in rows:
            delivery.attempts += 1
            try:
                by_name[delivery.channel].send(alert.id, alert.payload)
            except Exception as exc:  # any channel failure: keep it pending and back off
                delay = min(retry_initial_s * 2 ** (delivery.attempts - 1), retry_max_s)
                delivery.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
                delivery.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "alert %d via %s failed (attempt %d, next in %.1fs): %s",
                    alert.id,
                    delivery.channel,
                    delivery.attempts,
                    delay,
                    delivery.last_error,
                )
                continue
            delivery.status = "delivered"
            delivery.delivered_at = datetime.now(UTC)
            delivered += 1
    return delivered


class AlertDispatcher:
    """A daemon thread that drains the outbox every `poll_s` seconds; `stop` drains once more, bounded."""

    def __init__(self, sessions: sessionmaker[Session], channels: list[Channel], settings: Settings) -> None:
        self.sessions = sessions
        self.channels = channels
        self.settings = settings
        self.delivered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-dispatcher", daemon=True)

    def start(self) -> AlertDispatcher:
        if self.channels:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.drain_once()
            self._stop.wait(self.settings.alert_poll_s)

    def drain_once(self) -> int:
        try:
            count = deliver_due(
                self.sessions, self.channels, self.settings.alert_retry_initial_s, self.settings.alert_retry_max_s
            )
        except SQLAlchemyError as exc:  # database down: the outbox waits, nothing is lost
            log.warning("alert outbox unavailable: %s", type(exc).__name__)
            return 0
        self.delivered += count
        return count

    def stop(self, drain_timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=drain_timeout_s + self.settings.webhook_timeout_s)
        if self.channels:
            deadline = time.monotonic() + drain_timeout_s
            while time.monotonic() < deadline and self.drain_once():
                pass


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
        if producer is not None:
            producer.close(timeout=5)
        engine.dispose()
    return delivered


def _pending(sessions: sessionmaker[Session], channels: list[str]) -> bool:
    with sessions() as session:
        query = select(AlertDelivery.id).where(AlertDelivery.status == "pending", AlertDelivery.channel.in_(channels))
        return session.execute(query.limit(1)).first() is not None
