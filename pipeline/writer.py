"""The write step: one database transaction per batch (defects, counts, alerts, offsets), retried while the database
is down, on a writer thread of its own so that the next batch is decoded and scored meanwhile."""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerting.rules import AlertRules
from pipeline.errors import ShutdownRequested
from pipeline.inference import OnnxModel
from pipeline.metrics import ConsumerMetrics
from pipeline.results import FrameResult
from pipeline.settings import Settings
from pipeline.source import Offsets
from pipeline.storage.store import ModelInfo, fresh_results, register_model, stored_offsets, write_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """A processed batch: how many records were polled, their verdicts, the offsets they complete, who judged."""

    polled: int  # records, including those sent to the dead-letter topic
    results: list[FrameResult]
    offsets: Offsets
    model: OnnxModel
    started: float  # monotonic time processing began, for the batch-time histogram


@dataclass(frozen=True)
class Written:
    """A batch the database holds: its verdicts new to the database (not stored by an earlier run) and counts."""

    batch: Batch
    fresh: list[FrameResult]
    defects: int
    alerts: int


def _transient(exc: Exception) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class BatchTransaction:
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

    def write(self, batch: Batch) -> Written:
        """Raises ShutdownRequested if stopped while the database is down (the batch stays uncommitted)."""
        meta = batch.model.metadata
        info = ModelInfo(meta.model_name, meta.model_version)
        delay = self.settings.db_retry_initial_s
        while True:
            self.rules.checkpoint()
            try:
                with self.sessions() as session, session.begin():
                    fresh = fresh_results(session, self.settings.group_id, batch.results, batch.offsets)
                    alerts = self.rules.evaluate(fresh, info.version)
                    result = write_batch(
                        session,
                        self.settings.group_id,
                        fresh,
                        batch.offsets,
                        alerts,
                        self.channels,
                        info,
                        self.settings.count_interval_s,
                    )
                for alert in alerts:
                    self.metrics.alerts.labels(rule=alert.rule).inc()
                return Written(batch, fresh, result.defects, result.alerts)
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

    def stored_offsets(self, partitions: list[tuple[str, int]]) -> Offsets:
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


class BatchWriter:
    """The overlap of writing and scoring, as one object: `submit(batch N+1)` waits for batch N's transaction,
    starts N+1's on the writer thread and returns N's outcome, which the loop then commits to Kafka.

    Transactions run one at a time, in batch order (alert rule state and stored offsets depend on it).
    """

    def __init__(self, transaction: BatchTransaction) -> None:
        self.transaction = transaction
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="db-writer")
        self._inflight: Future[Written] | None = None

    def submit(self, batch: Batch) -> Written | None:
        """Start writing `batch`; the previous batch, now in the database, or None when there was none."""
        previous = self.drain()
        self._inflight = self._thread.submit(self.transaction.write, batch)
        return previous

    def drain(self) -> Written | None:
        """Wait for the batch being written; its outcome, or None when none was in flight. Raises what it raised."""
        inflight, self._inflight = self._inflight, None
        return inflight.result() if inflight is not None else None

    def settle(self, timeout_s: float | None = None) -> bool:
        """Wait up to `timeout_s` (None: no limit) for the batch being written, without taking its outcome (a
        rebalance: let it reach the database). False when it is still being written (the database is down)."""
        inflight = self._inflight
        if inflight is None:
            return True
        with contextlib.suppress(Exception):  # a timeout, or its error, which surfaces in drain()
            inflight.result(timeout=timeout_s)
        return inflight.done()

    def close(self) -> None:
        self.settle()
        self._thread.shutdown(wait=True)
