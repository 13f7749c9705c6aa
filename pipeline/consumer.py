"""The consumer loop: poll -> process (decode, dead-letter, score, judge) -> write -> commit, batch after batch.

Writing overlaps processing: `BatchWriter.submit` starts the new batch's transaction and hands back the previous
batch, which is then in the database and gets its offsets committed (at-least-once from Kafka, the database
transaction first).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np

from pipeline.alerting.channels import build_channels
from pipeline.alerting.outbox import AlertDispatcher
from pipeline.alerting.rules import AlertRuleConfig, AlertRules
from pipeline.deadletter import DeadLetterSink
from pipeline.decode import Decoded, try_decode
from pipeline.errors import ConfigError, InvalidMessageError, ShutdownRequested
from pipeline.frames.store import FrameStore
from pipeline.frames.sweep import RetentionSweeper
from pipeline.inference import ModelHolder, OnnxModel, image_loader
from pipeline.metrics import ConsumerMetrics
from pipeline.registry.watch import follow_registry, serving_model_path, serving_sensor_model_path
from pipeline.results import FrameResult
from pipeline.retry import Backoff
from pipeline.sensors.stage import SensorStage, open_sensor_stage, split_records
from pipeline.settings import Settings
from pipeline.source import FrameSource, next_offsets
from pipeline.storage.engine import DatabaseTimeouts
from pipeline.verdict import score_batch
from pipeline.wire import FrameLimits
from pipeline.writer import Batch, BatchTransaction, BatchWriter, Written, open_database_when_up

log = logging.getLogger(__name__)

NO_IMAGE_MODEL = InvalidMessageError("a frame, but this consumer has no image model (set model_path)")
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
    sensor_records: int = 0  # sensor records windowed (not dead-lettered)
    readings: int = 0  # samples in them
    windows: int = 0  # sensor windows scored and new to the database
    sensor_anomalies: int = 0
    gaps: int = 0  # gaps in devices' readings that restarted a window

    @property
    def frames_per_s(self) -> float:
        elapsed = self.active_seconds or self.seconds
        return self.frames / elapsed if elapsed > 0 else 0.0

    @property
    def readings_per_s(self) -> float:
        elapsed = self.active_seconds or self.seconds
        return self.readings / elapsed if elapsed > 0 else 0.0

    def add(self, written: Written) -> None:
        batch = written.batch
        sensors = batch.sensors
        accepted = sensors.records if sensors is not None else 0
        self.records += batch.polled
        self.batches += 1
        self.dlq += batch.polled - len(batch.results) - accepted + written.refused + written.refused_sensors
        self.frames += len(written.fresh)
        self.replayed += len(batch.results) - len(written.fresh) - written.refused
        self.defects += written.defects
        self.alerts += written.alerts
        if sensors is not None:
            self.sensor_records += accepted - written.refused_sensors
            self.readings += sensors.readings
            self.gaps += sensors.gaps
        self.windows += len(written.windows)
        self.sensor_anomalies += written.anomalies


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
    try:
        with open_consumer(settings, stop) as line:
            try:
                _consume(line, stats, max_messages, idle_exit, stop, on_batch)
            finally:
                stats.db_retries = line.writer.transaction.retries
    except ShutdownRequested as exc:
        log.warning("%s: the last batch will be replayed", exc)
    finally:
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


def _consume(
    line: LineConsumer,
    stats: ConsumerStats,
    max_messages: int | None,
    idle_exit: float | None,
    stop: threading.Event,
    on_batch: Callable[[list[FrameResult]], None] | None,
) -> None:
    idle = _IdleClock(idle_exit)
    polled = 0
    first_data = time.monotonic()

    def commit(written: Written | None) -> None:
        """A batch is in the database: commit its offsets, count it, hand its new verdicts on."""
        if written is None:
            return
        line.commit(written)
        stats.add(written)
        stats.active_seconds = time.monotonic() - first_data
        if on_batch is not None:
            on_batch(written.fresh)

    def finish(decoding: Polled) -> None:
        """Score a decoded batch, start its write, and commit the batch before it, which is now stored."""
        nonlocal polled
        batch = line.process(decoding)
        if batch is None:  # a rebalance handed its records over: they do not count as consumed
            polled -= len(decoding.records)
            return
        commit(line.writer.submit(batch))  # returns the batch before this one, in the database

    # Batch N+1 decodes on the pool while the consumer's thread scores batch N and the writer's thread stores N-1.
    pending: Polled | None = None
    batch_size = line.settings.batch_size
    while not stop.is_set() and not idle.expired(line.source):
        limit = batch_size if max_messages is None else min(batch_size, max_messages - polled)
        if limit <= 0:
            break
        line.maybe_reload_model()
        # With a decoded batch waiting, take only what has already arrived: a slow stream is not held back.
        records = line.source.poll(limit, wait=pending is None)
        if not records:
            if pending is not None:
                finish(pending)
                pending = None
            else:
                commit(line.writer.drain())  # idle: leave no written batch uncommitted
            continue
        if polled == 0:
            first_data = time.monotonic()
        polled += len(records)
        idle.touch()
        decoding = line.start_decoding(records)
        if pending is not None:
            finish(pending)
        pending = decoding
    if pending is not None:
        finish(pending)
    commit(line.writer.drain())


@dataclass
class Polled:
    """A polled batch whose frames are decoding on the pool, each into its slot of the model's input batch."""

    records: list[Any]
    frames: list[Any]  # the image records among them
    sensed: list[Any]  # the sensor records
    model: OnnxModel | None
    inputs: np.ndarray | None
    outcomes: list[Future[Decoded | InvalidMessageError]]
    revocations: int  # the source's count when it was polled: a rebalance since then hands its records over
    started: float


class LineConsumer:
    """The parts of one consumer process that the loop drives; `open_consumer` builds, starts and closes them."""

    def __init__(
        self,
        settings: Settings,
        source: FrameSource,
        model: ModelHolder | None,
        dlq: DeadLetterSink,
        writer: BatchWriter,
        metrics: ConsumerMetrics,
        decoders: ThreadPoolExecutor,
        sensors: SensorStage,
    ) -> None:
        self.settings = settings
        self.source = source
        self.model = model  # None: sensors only
        self.sensors = sensors
        self.dlq = dlq
        self.writer = writer
        self.metrics = metrics
        self.decoders = decoders
        self._next_reload_check = time.monotonic() + settings.model_reload_check_s

    def start_decoding(self, records: list[Any]) -> Polled:
        """Split a polled batch by content type and start decoding its frames on the pool; nothing waits here."""
        started = time.monotonic()
        frames, sensed = split_records(records)  # by content-type: sensor readings go to the sensor model
        model = self.model.model if self.model is not None else None
        limits = FrameLimits(self.settings.max_frame_bytes, self.settings.max_frame_pixels)
        inputs, outcomes = None, []
        if model is not None and frames:
            # Each frame is preprocessed straight into its slot of the batch the model takes: no stacking copy.
            spec = model.metadata.input_spec
            inputs = np.empty((len(frames), spec.channels, spec.size, spec.size), dtype=np.float32)
            outcomes = [
                self.decoders.submit(try_decode, record, model, limits, inputs[i]) for i, record in enumerate(frames)
            ]
        return Polled(records, frames, sensed, model, inputs, outcomes, self.source.revocations, started)

    def process(self, polled: Polled) -> Batch | None:
        """Dead-letter and judge a decoded batch (the CPU/GPU part); nothing is stored yet. None when a rebalance
        took partitions since it was polled: its records are left to the database offsets the partitions' owner
        (this consumer again, or another) starts from, so they are neither judged twice nor written late."""
        if polled.revocations != self.source.revocations:
            log.info("rebalanced since polling %d records: left to the partitions' owner", len(polled.records))
            for outcome in polled.outcomes:
                outcome.cancel()
            return None
        model, frames = polled.model, polled.frames
        sensors = self.sensors.process(polled.sensed, self.dead_letter)
        outcomes = [outcome.result() for outcome in polled.outcomes] if model else [NO_IMAGE_MODEL] * len(frames)
        good: list[Decoded] = []
        for record, outcome in zip(frames, outcomes, strict=True):
            if isinstance(outcome, InvalidMessageError):
                self.dead_letter(record, outcome.reason)
            else:
                good.append(outcome)
        inputs = polled.inputs if len(good) == len(frames) else None  # else score_batch stacks the good ones
        scored = score_batch(model, good, self.dead_letter, inputs) if model else None
        if model is not None and model.conditions is not None:
            self.metrics.condition_fallbacks.inc(model.conditions.take_fallbacks())
        self.dlq.flush()  # before the database: a record is never marked done while its DLQ copy is in flight
        results = scored.results if scored is not None else []
        records = polled.records
        return Batch(len(records), results, next_offsets(records), model, polled.started, records, sensors, scored)

    def dead_letter(self, record: Any, reason: str) -> None:
        self.dlq.add(record, reason)
        self.metrics.dlq.labels(reason=reason.split(" ")[0][:40]).inc()

    def commit(self, written: Written) -> None:
        """Commit the offsets of a batch the database holds, and count it in the metrics."""
        offsets = written.batch.offsets
        self.source.commit(offsets)
        self.metrics.observe(written.fresh, time.monotonic() - written.batch.started, self.source.lag(offsets))
        if (sensors := written.batch.sensors) is not None:
            self.metrics.observe_sensors(written.windows, sensors.readings, sensors.gaps)

    def maybe_reload_model(self) -> None:
        """Image and sensor models alike; a new version is recorded in model_versions with the first batch it judges."""
        if time.monotonic() < self._next_reload_check:
            return
        self._next_reload_check = time.monotonic() + self.settings.model_reload_check_s
        if self.model is not None and self.model.maybe_reload():
            model = self.model.model
            self.metrics.serving(model.metadata.model_name, model.metadata.model_version, model.provider)
        self.sensors.maybe_reload()


@contextmanager
def open_consumer(settings: Settings, stop: threading.Event) -> Iterator[LineConsumer]:
    """Build one consumer process's parts, start its threads (alert dispatcher, metrics server) and join the group;
    on exit, let the last write finish and close everything in reverse."""
    from kafka import KafkaProducer

    if settings.model_path is None and settings.sensor_model_path is None and settings.model_source == "file":
        raise ConfigError("no model: pass --model or set LINEGUARD_MODEL_PATH")  # or a sensor model
    with ExitStack() as stack:
        metrics = ConsumerMetrics()
        timeouts = DatabaseTimeouts(
            settings.db_connect_timeout_s, settings.db_statement_timeout_s, settings.db_lock_timeout_s
        )
        backoff = Backoff(settings.db_retry_initial_s, settings.db_retry_max_s)
        _, sessions = open_database_when_up(settings.db_url, timeouts, stop, backoff)
        image_path = serving_model_path(settings, sessions)
        load = image_loader(settings)  # TensorRT when asked for, onnxruntime's threads
        model = ModelHolder(image_path, settings.prefer_gpu, settings.batch_size, load) if image_path else None
        stack.callback(follow_registry(settings, sessions, model))  # model_source=registry: its active version
        # Not idempotent: kafka-python 3.0's idempotent producer never sends again once a batch it had sent expires
        # (an outage over delivery_timeout_ms), which would hold the DLQ until a restart. The DLQ and the alert topic
        # are at-least-once anyway (receivers dedupe on dlq-source-* headers and alert ids).
        producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=5, enable_idempotence=False)
        stack.callback(producer.close, timeout=10)
        channels = build_channels(settings, lambda: producer)
        rules = AlertRules(
            AlertRuleConfig(
                settings.alert_score,
                settings.burst_defects,
                settings.burst_window_frames,
                settings.alert_cooldown_s,
                settings.drift_window_frames,
                settings.drift_factor,
            )
        )
        writer_dlq = DeadLetterSink.from_settings(producer, settings, stop)  # the writer thread's own
        channel_names = [c.name for c in channels]
        frames = FrameStore(settings.frame_store_url)  # defects' images; rows hold their URIs
        if settings.frame_retention_days is not None:
            stack.callback(RetentionSweeper(frames, sessions, settings.frame_retention_days).start().stop)
        # Decodes frames for the consumer's thread and adds the defects' evidence for the writer's.
        decoders = stack.enter_context(ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode"))
        transaction = BatchTransaction(
            sessions, settings, rules, channel_names, metrics, stop, writer_dlq, frames, evidence_pool=decoders
        )
        stack.callback(AlertDispatcher(sessions, channels, settings, metrics=metrics).start().stop)
        writer = BatchWriter(transaction)
        sensors = open_sensor_stage(settings, serving_sensor_model_path(settings, sessions), producer)
        stack.callback(follow_registry(settings, sessions, sensors.holder))
        source = FrameSource.subscribe(settings, sensors.positions(transaction.stored_offsets, sessions), writer.settle)
        stack.callback(source.close)
        stack.callback(writer.close)  # before the source closes: the last batch reaches the database first
        if model is not None:
            served = model.model
            metrics.serving(served.metadata.model_name, served.metadata.model_version, served.provider)
        if settings.metrics_port is not None:
            metrics.serve(settings.metrics_port, settings.metrics_host)
        stack.callback(metrics.close)
        dlq = DeadLetterSink.from_settings(producer, settings, stop)
        yield LineConsumer(settings, source, model, dlq, writer, metrics, decoders, sensors)


class _IdleClock:
    """--idle-exit: seconds without records, counted from the first partition assignment (joining takes seconds)."""

    def __init__(self, idle_exit: float | None) -> None:
        self.idle_exit = idle_exit
        self.since: float | None = None
        self.join_deadline = time.monotonic() + JOIN_GRACE_S + (idle_exit or 0.0)

    def touch(self) -> None:
        self.since = time.monotonic()

    def expired(self, source: FrameSource) -> bool:
        if self.idle_exit is None:
            return False
        now = time.monotonic()
        if self.since is None:
            if not source.assigned():
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
