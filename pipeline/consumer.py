"""The consumer loop: poll a batch, decode, score once, judge, write (DB + DLQ), then commit offsets."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline.alerting.channels import build_channels
from pipeline.alerting.outbox import AlertDispatcher
from pipeline.alerting.rules import AlertRuleConfig, AlertRules
from pipeline.deadletter import DeadLetterSink
from pipeline.decode import Decoded, try_decode
from pipeline.errors import ConfigError, InvalidMessageError
from pipeline.inference import ModelHolder
from pipeline.metrics import ConsumerMetrics
from pipeline.results import FrameResult
from pipeline.settings import Settings
from pipeline.sinks import DatabaseSink, ShutdownRequested, Written
from pipeline.storage.engine import open_database
from pipeline.verdict import judge

log = logging.getLogger(__name__)

JOIN_GRACE_S = 60.0  # with an idle exit: give up when no partition is assigned within this plus the idle time


@dataclass
class ConsumerStats:
    """What one `run_consumer` call did."""

    records: int = 0  # every record polled, good or not
    frames: int = 0  # frames scored and stored
    defects: int = 0
    dlq: int = 0
    alerts: int = 0
    replayed: int = 0  # records skipped because an earlier run had already stored them
    batches: int = 0
    db_retries: int = 0  # batch transactions retried because the database was unavailable
    seconds: float = 0.0  # whole call, including model load and the group join
    active_seconds: float = 0.0  # from the first record polled to the end of the last batch

    @property
    def frames_per_s(self) -> float:
        elapsed = self.active_seconds or self.seconds
        return self.frames / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class _InFlight:
    """A batch judged and handed to the writer thread, not yet committed to Kafka."""

    future: Future[Written]
    records: list[Any]
    results: list[FrameResult]
    offsets: dict[tuple[str, int], int]
    started: float


class LineConsumer:
    """Owns the Kafka clients, model, database sink, DLQ and alert dispatcher of one consumer process."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        if settings.model_path is None:
            raise ConfigError("no model: pass --model or set LINEGUARD_MODEL_PATH")
        self.settings = settings
        self.stop = stop
        self.metrics = ConsumerMetrics()
        self.model = ModelHolder(Path(settings.model_path), settings.prefer_gpu, warm_up_batch=settings.batch_size)
        _, self.sessions = open_database(settings.database_url)
        self.producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=5)
        self.dlq = DeadLetterSink(self.producer, settings.dlq_topic, settings.max_frame_bytes)
        channels = build_channels(settings, lambda: self.producer)
        rules = AlertRules(
            AlertRuleConfig(
                settings.alert_score, settings.burst_defects, settings.burst_window_frames, settings.alert_cooldown_s
            )
        )
        self.db = DatabaseSink(self.sessions, settings, rules, [c.name for c in channels], self.metrics, stop)
        self.db.register_model(self.model.model)
        self.dispatcher = AlertDispatcher(self.sessions, channels, settings).start()
        self.pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="db-writer")
        self.inflight: _InFlight | None = None
        self.consumer = KafkaConsumer(
            **settings.consumer_options(),
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        self.consumer.subscribe([settings.frames_topic], listener=_rebalance_listener(self))
        self.pending: dict[tuple[str, int], int] = {}
        self._next_reload_check = time.monotonic() + settings.model_reload_check_s
        model = self.model.model
        self.metrics.model.info(
            {"name": model.metadata.model_name, "version": model.metadata.model_version, "provider": model.provider}
        )
        if settings.metrics_port is not None:
            self.metrics.serve(settings.metrics_port)

    def poll(self, limit: int) -> list[Any]:
        batches = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms, max_records=limit)
        return [record for records in batches.values() for record in records]

    def prepare(self, records: list[Any]) -> tuple[list[FrameResult], float]:
        """Decode, dead-letter and judge one batch (the CPU/GPU part); nothing is stored yet."""
        started = time.monotonic()
        model = self.model.model
        limit = self.settings.max_frame_bytes
        outcomes = list(self.pool.map(lambda r: try_decode(r, model, limit), records))
        good = [o for o in outcomes if isinstance(o, Decoded)]
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, InvalidMessageError):
                self.dlq.add(record, outcome.reason)
                self.metrics.dlq.labels(reason=outcome.reason.split(" ")[0][:40]).inc()
        results = judge(model, good, self.settings.store_images)
        self.dlq.flush()  # before the database: a record is never marked done while its DLQ copy is in flight
        return results, started

    def submit(self, records: list[Any], results: list[FrameResult], started: float) -> None:
        """Write the batch on the writer thread, so the next batch is decoded and scored meanwhile."""
        offsets = _next_offsets(records)
        future = self.writer.submit(self.db.write, results, offsets, self.model.model)
        self.inflight = _InFlight(future, records, results, offsets, started)

    def finish(self, stats: ConsumerStats) -> list[FrameResult] | None:
        """Wait for the batch being written, then commit its offsets; its new verdicts, or None if none was.

        Raises ShutdownRequested if stopped while the database is down (offsets stay uncommitted)."""
        batch, self.inflight = self.inflight, None
        if batch is None:
            return None
        written = batch.future.result()
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        # A rebalance during the write may have moved a partition: its new owner resumes from the database.
        self.commit({key: offset for key, offset in batch.offsets.items() if key in assigned})
        self._count(stats, batch.records, batch.results, written, batch.started)
        return written.fresh

    def wait_for_writer(self) -> None:
        if self.inflight is not None:
            with contextlib.suppress(Exception):  # its error surfaces in finish()
                self.inflight.future.result()

    def _count(
        self, stats: ConsumerStats, records: list[Any], results: list[FrameResult], written: Any, started: float
    ) -> None:
        fresh = written.fresh
        stats.records += len(records)
        stats.batches += 1
        stats.dlq += len(records) - len(results)
        stats.frames += len(fresh)
        stats.replayed += len(results) - len(fresh)
        stats.defects += written.defects
        stats.alerts += written.alerts
        for result in fresh:
            self.metrics.frames.labels(camera=result.camera_id).inc()
            self.metrics.frame_latency.observe(result.latency_ms / 1000.0)
            if result.is_defect:
                self.metrics.defects.labels(camera=result.camera_id).inc()
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        for (topic, partition), next_offset in _next_offsets(records).items():
            highwater = self.consumer.highwater(_tp(topic, partition))
            if highwater is not None:
                self.metrics.lag.labels(topic=topic, partition=str(partition)).set(max(0, highwater - next_offset))

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit to Kafka what the database already holds; a failure is retried with the next commit."""
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        for key, value in offsets.items():
            self.pending[key] = max(self.pending.get(key, 0), value)
        if not self.pending:
            return
        try:
            self.consumer.commit({_tp(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in self.pending.items()})
        except KafkaError as exc:
            # Typically a rebalance: whoever gets the partition resumes from the database offsets.
            log.warning("offset commit failed (%s); the database offsets keep the replay harmless", exc)
        self.pending.clear()

    def maybe_reload_model(self) -> None:
        if time.monotonic() < self._next_reload_check:
            return
        self._next_reload_check = time.monotonic() + self.settings.model_reload_check_s
        if self.model.maybe_reload():
            model = self.model.model
            self.db.register_model(model)
            self.metrics.model.info(
                {"name": model.metadata.model_name, "version": model.metadata.model_version, "provider": model.provider}
            )

    def close(self) -> None:
        self.wait_for_writer()
        self.writer.shutdown(wait=True)
        self.metrics.close()
        self.dispatcher.stop()
        self.pool.shutdown(wait=True)
        self.consumer.close(autocommit=False)
        self.producer.close(timeout=10)


def _rebalance_listener(owner: LineConsumer) -> Any:
    from kafka import ConsumerRebalanceListener

    class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
        """Commit on revoke; on assignment, skip ahead to what the database already holds."""

        def on_partitions_revoked(self, revoked: Any) -> None:
            _on_revoked(owner, revoked)

        def on_partitions_assigned(self, assigned: Any) -> None:
            _on_assigned(owner, assigned)

    return RebalanceListener()


def _on_revoked(owner: LineConsumer, revoked: Any) -> None:
    # Let the batch being written reach the database first: the partitions' next owner starts from the
    # database offsets. (Committing to Kafka from here is not possible: listeners run on the IO thread.)
    log.info("revoked partitions: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))
    owner.wait_for_writer()


def _on_assigned(owner: LineConsumer, assigned: Any) -> None:
    log.info("assigned partitions: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
    # kafka-python runs listeners on its IO thread: only non-blocking calls (seek) are allowed here.
    # The database offset is never behind Kafka's (it commits first), so skipping ahead to it is safe.
    try:
        stored = owner.db.stored_offsets([(tp.topic, tp.partition) for tp in assigned])
    except Exception as exc:  # the database may be down: then Kafka's offset and the replay filter suffice
        log.warning("could not read stored offsets on assignment: %s", exc)
        return
    for tp in assigned:
        target = stored.get((tp.topic, tp.partition))
        if target is not None:
            owner.consumer.seek(tp, target)


def _next_offsets(records: list[Any]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets


def _tp(topic: str, partition: int) -> Any:
    from kafka.structs import TopicPartition

    return TopicPartition(topic, partition)


def run_consumer(
    settings: Settings,
    max_messages: int | None = None,
    idle_exit: float | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[list[FrameResult]], None] | None = None,
) -> ConsumerStats:
    """Consume frames until SIGTERM/SIGINT, `stop` set, `max_messages` records or `idle_exit` seconds without data.

    Each batch is finished, written and committed before returning; alerts still in the outbox get one
    bounded delivery attempt and are otherwise delivered by the next run. `on_batch` sees the verdicts
    of every committed batch (new frames only), e.g. to compare with the simulator's ground truth.
    """
    stop = stop or threading.Event()
    previous = _install_signal_handlers(stop)
    started = time.monotonic()
    stats = ConsumerStats()
    runtime = LineConsumer(settings, stop)
    first_data = time.monotonic()

    def deliver(fresh: list[FrameResult] | None) -> None:
        if fresh is not None:
            stats.active_seconds = time.monotonic() - first_data
            if on_batch is not None:
                on_batch(fresh)

    try:
        idle = _IdleClock(idle_exit)
        polled = 0
        while not stop.is_set() and not idle.expired(runtime):
            limit = settings.batch_size if max_messages is None else min(settings.batch_size, max_messages - polled)
            if limit <= 0:
                break
            runtime.maybe_reload_model()
            records = runtime.poll(limit)
            if not records:
                deliver(runtime.finish(stats))  # idle: do not leave a written batch uncommitted
                continue
            if polled == 0:
                first_data = time.monotonic()
            polled += len(records)
            idle.touch()
            results, started = runtime.prepare(records)  # scored while the previous batch is being written
            deliver(runtime.finish(stats))
            runtime.submit(records, results, started)
        deliver(runtime.finish(stats))
    except ShutdownRequested:
        log.warning("stopped while the database was unavailable: the last batch will be replayed")
    finally:
        stats.db_retries = runtime.db.retries
        runtime.close()
        _restore_signal_handlers(previous)
        stats.seconds = time.monotonic() - started
    log.info(
        "consumer stopped: %d frames, %d defects, %d dead-lettered, %.1f frames/s",
        stats.frames,
        stats.defects,
        stats.dlq,
        stats.frames_per_s,
    )
    return stats


class _IdleClock:
    """--idle-exit: seconds without records, counted from the first partition assignment (joining takes seconds)."""

    def __init__(self, idle_exit: float | None) -> None:
        self.idle_exit = idle_exit
        self.since: float | None = None
        self.join_deadline = time.monotonic() + JOIN_GRACE_S + (idle_exit or 0.0)

    def touch(self) -> None:
        self.since = time.monotonic()

    def expired(self, runtime: LineConsumer) -> bool:
        if self.idle_exit is None:
            return False
        now = time.monotonic()
        if self.since is None:
            if not runtime.consumer.assignment():
                return now >= self.join_deadline
            self.since = now
        return now - self.since >= self.idle_exit


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # signals are only delivered to the main thread; callers there use `stop`

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current batch, then stopping", signal.Signals(signum).name)
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
