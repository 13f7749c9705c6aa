"""The write step: one database transaction per batch (defects, counts, alerts, offsets), retried while the database
is down, on a writer thread of its own so that the next batch is decoded and scored meanwhile."""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerting.rules import AlertRules, DriftReference
from pipeline.alerting.state import load_rule_state, save_rule_state
from pipeline.deadletter import DeadLetterSink
from pipeline.errors import FrameStoreError
from pipeline.frames.store import FrameStore
from pipeline.inference import OnnxModel
from pipeline.metrics import ConsumerMetrics
from pipeline.results import FrameResult, RaisedAlert, Source, WindowResult
from pipeline.retry import Backoff, retry
from pipeline.sensors.model import SensorModel
from pipeline.sensors.stage import SensorBatch
from pipeline.sensors.state import SensorWrite, write_sensor_batch
from pipeline.settings import Settings
from pipeline.source import Offsets
from pipeline.storage.engine import DatabaseTimeouts, open_database
from pipeline.storage.isolate import store_isolating
from pipeline.storage.store import (
    ModelInfo,
    advance_offsets,
    fresh_results,
    register_model,
    stored_offsets,
    write_results,
)
from pipeline.verdict import Scored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """A processed batch: how many records were polled, their verdicts, the offsets they complete, who judged."""

    polled: int  # records, including those sent to the dead-letter topic
    results: list[FrameResult]
    offsets: Offsets
    model: OnnxModel | None  # None on a consumer with only a sensor model
    started: float  # monotonic time processing began, for the batch-time histogram
    records: list[Any] = field(default_factory=list)  # the polled records, to dead-letter one the database refuses
    sensors: SensorBatch | None = None  # the sensor records' windows and device states
    # Set while the defects' evidence (regions, images) is still to be added to `results`: the writer's thread
    # adds it before the transaction, so the consumer's thread goes on to score the next batch.
    scored: Scored | None = None

    def with_evidence(self, store_images: bool, pool: Executor | None = None) -> Batch:
        """This batch with every defect's regions (and images) in its results."""
        if self.scored is None:
            return self
        return replace(self, results=self.scored.with_evidence(store_images, pool), scored=None)


@dataclass(frozen=True)
class Written:
    """A batch the database holds: its verdicts new to the database (not stored by an earlier run) and counts."""

    batch: Batch
    fresh: list[FrameResult]
    defects: int
    alerts: int
    refused: int = 0  # verdicts the database refused, dead-lettered instead
    windows: list[WindowResult] = field(default_factory=list)  # sensor windows new to the database
    anomalies: int = 0
    refused_sensors: int = 0  # sensor records whose windows the database refused, dead-lettered instead


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, FrameStoreError):
        return exc.transient  # an object store outage waits like a database outage; a bad path or permission stops
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _outage(exc: BaseException) -> str:
    if isinstance(exc, FrameStoreError):
        return f"frame store unavailable ({exc})"
    return f"database unavailable ({type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__})"


def open_database_when_up(
    url: str, timeouts: DatabaseTimeouts, stop: threading.Event, backoff: Backoff
) -> tuple[Engine, sessionmaker[Session]]:
    """`open_database` for the consumer, waiting with backoff while the database is unreachable: a line restarted
    during a database outage waits for it (as a running one does), instead of exiting into a crash loop.
    Raises ShutdownRequested if `stop` is set meanwhile."""

    def waiting(exc: BaseException, wait_s: float) -> None:
        reason = type(getattr(exc, "orig", exc)).__name__
        log.warning("database unreachable at start-up (%s); retrying in %.1fs", reason, wait_s)

    return retry(
        lambda: open_database(url, timeouts=timeouts, writer=True),
        transient=lambda exc: isinstance(exc, OperationalError | InterfaceError),
        backoff=backoff,
        stop=stop,
        stopped="stopped while the database was unreachable",
        on_retry=waiting,
    )


class BatchTransaction:
    """Writes a batch in one transaction; while the database is unavailable, waits and retries the same batch.

    A verdict the database refuses for good (a value it cannot hold) must not stop the line: the batch is split
    in savepoints until the refused verdicts are isolated, those are dead-lettered, the rest is stored.

    With a frame store, the new defects' images are put there inside the transaction, before the rows that reference
    them commit; a transaction that fails deletes them again, and so do refused verdicts. A crash in between leaves
    orphans only: the replay rewrites the same keys, and `lineguard frames gc` deletes what no row references.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        rules: AlertRules,
        channels: list[str],
        metrics: ConsumerMetrics,
        stop: threading.Event,
        dead_letter: DeadLetterSink,
        frames: FrameStore | None = None,
        evidence_pool: Executor | None = None,
    ) -> None:
        self.sessions = sessions
        self.evidence_pool = evidence_pool  # spreads the defects' evidence over its threads
        self.frames = frames
        self.settings = settings
        self.rules = rules
        self.channels = channels
        self.metrics = metrics
        self.stop = stop
        self.dead_letter = dead_letter  # this thread's own sink
        self.retries = 0
        self._registered: set[tuple[str, str]] = set()

    def write(self, batch: Batch) -> Written:
        """Raises ShutdownRequested if stopped while the database is down (the batch stays uncommitted)."""
        batch = batch.with_evidence(self.settings.store_images, self.evidence_pool)  # once, whatever the retries

        def waiting(exc: BaseException, wait_s: float) -> None:
            self.retries += 1
            self.metrics.db_retries.inc()
            log.warning("%s; batch kept, offsets not committed, retry in %.1fs", _outage(exc), wait_s)

        return retry(
            lambda: self._write_once(batch),
            transient=_transient,
            backoff=Backoff(self.settings.db_retry_initial_s, self.settings.db_retry_max_s),
            stop=self.stop,
            stopped="stopped while the database was unavailable",
            on_retry=waiting,
        )

    def _write_once(self, batch: Batch) -> Written:
        meta = batch.model.metadata if batch.model is not None else None
        info = ModelInfo(meta.model_name, meta.model_version) if meta is not None else ModelInfo("", "")
        put: list[str] = []  # frame store objects this attempt wrote (or began to)
        committing = False
        try:
            with self.sessions() as session, session.begin():
                served = [m for m in (batch.model, batch.sensors.model if batch.sensors else None) if m is not None]
                registered = [key for key in (self._register(session, m) for m in served) if key is not None]
                fresh = fresh_results(session, self.settings.group_id, batch.results, batch.offsets)
                refs = self.frames.put_results(fresh, put) if self.frames is not None else None
                reference = DriftReference.of(meta) if meta is not None else None
                stored = self._store_isolating(session, fresh, info, refs, reference)
                if stored.refused:
                    self._dead_letter(batch, [(result.source, exc) for result, exc in stored.refused], "frame")
                sensed = self._write_sensors(session, batch.sensors)
                if sensed and sensed.refused:
                    self._dead_letter(batch, sensed.refused, "sensor window")
                advance_offsets(session, self.settings.group_id, batch.offsets)
                committing = True
        except BaseException:
            # Rolled back: no row references these objects. A COMMIT that failed may still have landed, so its
            # objects stay (the retry's replay skips or rewrites them; `frames gc` deletes true orphans).
            if put and not committing and self.frames is not None:
                self.frames.discard(put)
            raise
        if self.frames is not None and refs and stored.refused:  # no row references a refused verdict's images
            self.frames.discard([uri for result, _ in stored.refused for uri in refs.get(result.source, {}).values()])
        self._registered.update(registered)
        for alert in stored.alerts:
            self.metrics.alerts.labels(rule=alert.rule).inc()
        refused = {id(result) for result, _ in stored.refused}
        kept = [r for r in fresh if id(r) not in refused]
        alerts = len(stored.alerts) + (sensed.alerts if sensed else 0)
        windows = (sensed.fresh, sensed.anomalies, len(sensed.refused)) if sensed else ([], 0, 0)
        return Written(batch, kept, stored.defects, alerts, len(stored.refused), *windows)

    def _write_sensors(self, session: Session, sensors: SensorBatch | None) -> SensorWrite | None:
        """The sensor windows, anomalies, alerts and device states of the batch, in its transaction."""
        if sensors is None:
            return None
        meta = sensors.model.metadata
        info = ModelInfo(meta.model_name, meta.model_version)
        group = self.settings.group_id
        return write_sensor_batch(session, group, sensors.results, sensors.tails, self.rules, self.channels, info)

    def _store_isolating(
        self,
        session: Session,
        results: list[FrameResult],
        info: ModelInfo,
        refs: dict[Source, dict[str, str]] | None,
        reference: DriftReference | None,
    ) -> _Stored:
        """Store `results`, isolating the verdicts the database refuses (`storage.isolate`)."""

        def store(part: list[FrameResult]) -> tuple[int, list[RaisedAlert]]:
            cameras = load_rule_state(session, {r.camera_id for r in part})
            alerts = self.rules.evaluate(part, info.version, cameras, reference)
            written = write_results(session, part, alerts, self.channels, info, self.settings.count_interval_s, refs)
            save_rule_state(session, cameras)
            if reference is not None:
                self.metrics.observe_drift({camera: state.drift for camera, state in cameras.items()}, reference.budget)
            return written.defects, alerts

        outcomes, refused = store_isolating(session, results, store)
        return _Stored(sum(d for d, _ in outcomes), [a for _, alerts in outcomes for a in alerts], refused)

    def _dead_letter(self, batch: Batch, refused: list[tuple[Source, DBAPIError]], what: str) -> None:
        """Send the refused verdicts' records to the dead-letter topic before the transaction commits their offsets."""
        by_source = {(r.topic, r.partition, r.offset): r for r in batch.records}
        for source, exc in refused:
            reason = f"database refused the {what}: {type(exc.orig).__name__}: {str(exc.orig).splitlines()[0]}"
            log.error("%s: %s", source, reason)
            self.dead_letter.add(by_source[(source.topic, source.partition, source.offset)], reason)
            self.metrics.dlq.labels(reason="database").inc()
        self.dead_letter.flush()

    def _register(self, session: Session, model: OnnxModel | SensorModel) -> tuple[str, str] | None:
        """Record a model version with the first batch it judged (not on reload: a database blip then is harmless);
        once per version and process, not every batch."""
        meta = model.metadata
        key = (meta.model_name, meta.model_version)
        if key in self._registered:
            return None
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
        return key

    def stored_offsets(self, partitions: list[tuple[str, int]]) -> Offsets:
        with self.sessions() as session:
            return stored_offsets(session, self.settings.group_id, partitions)


@dataclass
class _Stored:
    """What storing some verdicts did: defects written, alerts raised, verdicts refused (with the error)."""

    defects: int = 0
    alerts: list[RaisedAlert] = field(default_factory=list)
    refused: list[tuple[FrameResult, DBAPIError]] = field(default_factory=list)


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
