"""Database sink: one transaction per batch (defects, counts, alerts, offsets), retried while the database is down."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerting.rules import AlertRules
from pipeline.errors import LineGuardError
from pipeline.inference import OnnxModel
from pipeline.metrics import ConsumerMetrics
from pipeline.results import FrameResult
from pipeline.settings import Settings
from pipeline.storage.store import ModelInfo, fresh_results, register_model, stored_offsets, write_batch

log = logging.getLogger(__name__)


class ShutdownRequested(LineGuardError):
    """Stop was requested while a batch could not be written; its offsets stay uncommitted."""


@dataclass(frozen=True)
class Written:
    fresh: list[FrameResult]  # results not already stored by an earlier run
    defects: int
    alerts: int


def _transient(exc: Exception) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class DatabaseSink:
    """Writes a batch in one transaction; while the database is unavailable, waits and retries the same batch."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        rules: AlertRules,
        channels: list[str],
        metrics: ConsumerMetrics,
        stop: threading.Event,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.rules = rules
        self.channels = channels
        self.metrics = metrics
        self.stop = stop
        self.retries = 0

    def write(self, results: list[FrameResult], offsets: dict[tuple[str, int], int], model: OnnxModel) -> Written:
        info = ModelInfo(model.metadata.model_name, model.metadata.model_version)
        delay = self.settings.db_retry_initial_s
        while True:
            self.rules.checkpoint()
            try:
                with self.sessions() as session, session.begin():
                    fresh = fresh_results(session, self.settings.group_id, results, offsets)
                    alerts = self.rules.evaluate(fresh, info.version)
                    result = write_batch(
                        session,
                        self.settings.group_id,
                        fresh,
                        offsets,
                        alerts,
                        self.channels,
                        info,
                        self.settings.count_interval_s,
                    )
                for alert in alerts:
                    self.metrics.alerts.labels(rule=alert.rule).inc()
                return Written(fresh=fresh, defects=result.defects, alerts=result.alerts)
            except Exception as exc:
                self.rules.rollback()
                if not _transient(exc):
                    raise
                self.retries += 1
                self.metrics.db_retries.inc()
                log.warning(
                    "database unavailable (%s); batch kept, offsets not committed, retry in %.1fs",
                    type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__,
                    delay,
                )
                if self.stop.wait(delay):
                    raise ShutdownRequested("stopped while the database was unavailable") from exc
                delay = min(delay * 2, self.settings.db_retry_max_s)

    def stored_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        with self.sessions() as session:
            return stored_offsets(session, self.settings.group_id, partitions)

    def register_model(self, model: OnnxModel) -> None:
        meta = model.metadata
        with self.sessions() as session, session.begin():
            register_model(
                session,
                {
                    "model_name": meta.model_name,
                    "model_version": meta.model_version,
                    "architecture": meta.architecture,
                    "image_threshold": meta.image_threshold,
                    "pixel_threshold": meta.pixel_threshold,
                    "path": str(model.path),
                    "provider": model.provider,
                    "first_served_at": datetime.now(UTC),
                },
            )
