"""Sensor stage of the consumer: sensor records -> checked readings -> windows per device -> one batched inference
-> window verdicts, plus the window state to store with the batch (and the denoised windows, when asked).

Window state lives in memory between batches and in the database with every batch (pipeline/sensors/state.py); a
partition's state is read back whenever the partition is (re)assigned, in the same step that reads its offsets,
so a restarted or rebalanced consumer continues each device's windows exactly where the last stored batch left
them. A record below a device's stored next offset was already applied and is skipped (no double scoring).

A model adapted to each run's first rows (`adapt_rows`, pipeline.sensors.adapt) scores what `evaluate` scores: a
device's run starts at the first reading this group sees from it, after a gap (where its windows restart), and after
a record refused for a NaN/inf reading (a missing reading ends a run in `evaluate`); its first `adapt_rows` readings
are held back as the baseline, judged by no window, and stored with the window state until the baseline exists,
then the baseline is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import InvalidMessageError
from pipeline.inference import ModelHolder
from pipeline.results import Source, WindowResult
from pipeline.sensors.adapt import RunBaseline, feed_adapted
from pipeline.sensors.model import SensorModel
from pipeline.sensors.state import SavedTail, load_tails
from pipeline.sensors.windows import DeviceTail, Window, feed
from pipeline.sensors.wire import EncodedFrame, SensorBlock, encode_readings, is_sensor_record, parse_readings
from pipeline.settings import Settings
from pipeline.source import Offsets, StoredOffsets

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # topic, partition, device
Reject = Callable[[Any, str], None]
SCORE_CHUNK = 256  # windows per inference: bounds memory with long blocks of readings
TOP_CHANNELS = 3
NO_SENSOR_MODEL = "sensor readings, but this consumer has no sensor model (set sensor_model_path)"


@dataclass(frozen=True)
class SensorBatch:
    """A batch's sensor part: window verdicts and the device states to store with it."""

    results: list[WindowResult]
    tails: list[SavedTail]
    model: SensorModel
    records: int = 0  # sensor records applied (not dead-lettered, not skipped as already applied)
    readings: int = 0  # samples in them
    gaps: int = 0


@dataclass
class _Pending:
    windows: list[tuple[Window, Source, RunBaseline | None]] = field(default_factory=list)
    touched: dict[Key, DeviceTail] = field(default_factory=dict)
    records: int = 0
    readings: int = 0
    gaps: int = 0


class DenoisedSink:
    """Publishes scored windows' reconstructions to `denoised_topic`; flushed before the batch is written, so a window
    the database holds was published (at least once: a replay after a crash before the database commit repeats it,
    receivers dedupe on source-* headers plus the window start)."""

    def __init__(self, producer: Any, topic: str, timeout_s: float) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def __call__(self, message: EncodedFrame) -> None:
        self.producer.send(self.topic, key=message.key, value=message.value, headers=message.headers)

    def flush(self) -> None:
        self.producer.flush(timeout=self.timeout_s)


def open_sensor_stage(settings: Settings, model_path: Path | None, producer: Any) -> SensorStage:
    """The consumer's sensor stage: with a sensor model file (`sensor_model_path`, or the registry's active version
    of its name) a loaded sensor model, without one a stage that dead-letters sensor records."""
    model = ModelHolder(model_path, settings.prefer_gpu, load=SensorModel) if model_path is not None else None
    sink = (
        DenoisedSink(producer, settings.denoised_topic, settings.dlq_send_timeout_s)
        if settings.denoised_topic
        else None
    )
    return SensorStage(model, settings.group_id, settings.max_frame_bytes, settings.sensor_gap_periods, sink)


def split_records(records: list[Any]) -> tuple[list[Any], list[Any]]:
    """(frames, sensor records), each in polled order."""
    frames, sensors = [], []
    for record in records:
        (sensors if is_sensor_record(record.headers) else frames).append(record)
    return frames, sensors


class SensorStage:
    """Windows and scores the sensor records of each batch for one consumer."""

    def __init__(
        self,
        holder: ModelHolder[SensorModel] | None,
        group_id: str,
        max_bytes: int,
        gap_periods: float,
        publish: DenoisedSink | None = None,
    ) -> None:
        self.holder = holder  # None: sensor records are dead-lettered
        self.group_id = group_id
        self.max_bytes = max_bytes
        self.gap_periods = gap_periods
        self.publish = publish
        self.tails: dict[Key, DeviceTail] = {}
        self.baselines: dict[Key, RunBaseline] = {}  # adapted model: each device's current run's, once it exists

    @property
    def model(self) -> SensorModel | None:
        return self.holder.model if self.holder is not None else None

    def maybe_reload(self) -> bool:
        """Swap in a changed sensor model file (same channels and window), as ModelHolder does for frames; one with
        another adapt_rows starts every device's run over (the held readings and baselines were kept for the old)."""
        if self.holder is None:
            return False
        before = self.holder.model.spec.adapt_rows
        if not self.holder.maybe_reload():
            return False
        if self.holder.model.spec.adapt_rows != before:
            for key in self.tails:
                self._new_run(key)
        return True

    def positions(self, stored_offsets: StoredOffsets, sessions: sessionmaker[Session]) -> StoredOffsets:
        """`stored_offsets` that also reads the window state of the partitions being positioned (an assignment)."""

        def read(partitions: list[tuple[str, int]]) -> Offsets:
            offsets = stored_offsets(partitions)
            if self.model is not None:
                with sessions() as session:
                    spec = self.model.spec
                    loaded = load_tails(session, self.group_id, partitions, spec.channels, spec.adapt_rows)
                self.reset(partitions, loaded)
            return offsets

        return read

    def reset(self, partitions: list[tuple[str, int]], loaded: dict[Key, SavedTail]) -> None:
        keys = set(partitions)
        self.tails = {k: v for k, v in self.tails.items() if (k[0], k[1]) not in keys}
        self.tails |= {k: v.tail for k, v in loaded.items()}
        self.baselines = {k: v for k, v in self.baselines.items() if (k[0], k[1]) not in keys}
        self.baselines |= {k: v.baseline for k, v in loaded.items() if v.baseline is not None}

    def process(self, records: list[Any], reject: Reject) -> SensorBatch | None:
        if not records:
            return None
        if self.model is None:
            for record in records:
                reject(record, NO_SENSOR_MODEL)
            return None
        pending = _Pending()
        for record in records:
            self._apply(record, pending, reject)
        results = self._judge(pending.windows)
        spec = self.model.spec
        tails = [
            SavedTail(key[0], key[1], spec.channels, replace(tail), spec.adapt_rows, self.baselines.get(key))
            for key, tail in pending.touched.items()
        ]
        if self.publish is not None and pending.windows:
            self.publish.flush()
        return SensorBatch(results, tails, self.model, pending.records, pending.readings, pending.gaps)

    def _apply(self, record: Any, pending: _Pending, reject: Reject) -> None:
        assert self.model is not None
        spec = self.model.spec
        try:
            block = parse_readings(record.value, record.headers, self.max_bytes)
            key = (record.topic, record.partition, block.device_id)
            tail = self.tails.get(key) or DeviceTail.empty(block.device_id, block.line_id, len(spec.channels))
            if record.offset < tail.next_offset:
                pending.records += 1
                return  # applied by an earlier batch that the database holds
            windows: list[tuple[Window, RunBaseline | None]]
            if spec.adapt_rows:
                adapted = feed_adapted(tail, self.baselines.get(key), block, spec, self.gap_periods, record.offset)
                windows, gaps = list(adapted.windows), adapted.gaps
                self._set_baseline(key, adapted.baseline)
            else:
                fed = feed(tail, block, spec, self.gap_periods, record.offset)
                windows, gaps = [(window, None) for window in fed.windows], fed.gaps
        except InvalidMessageError as exc:
            if spec.adapt_rows:
                self._end_run(record, pending)
            reject(record, exc.reason)
            return
        self.tails[key] = pending.touched[key] = tail
        pending.records += 1
        pending.readings += len(block.timestamps_ms)
        source = Source(record.topic, record.partition, record.offset)
        if gaps:
            pending.gaps += gaps
            log.info("device %s: %d gap(s) in its readings at %s; windows restarted", block.device_id, gaps, source)
        pending.windows += [(window, source, baseline) for window, baseline in windows]

    def _set_baseline(self, key: Key, baseline: RunBaseline | None) -> None:
        if baseline is None:
            self.baselines.pop(key, None)
        else:
            self.baselines[key] = baseline

    def _new_run(self, key: Key) -> None:
        """The device's next readings start a run: the held readings and the baseline are dropped."""
        tail = self.tails[key]
        tail.timestamps_ms, tail.values = tail.timestamps_ms[:0], tail.values[:0]
        self.baselines.pop(key, None)

    def _end_run(self, record: Any, pending: _Pending) -> None:
        """A record refused for a NaN/inf reading ends its device's run, as a missing reading ends a stretch in
        `evaluate`: the next readings make a new baseline. Stored with the batch, like any change to the state."""
        block = _refused_for_non_finite(record, self.max_bytes)
        if block is None:
            return
        key = (record.topic, record.partition, block.device_id)
        tail = self.tails.get(key)
        if tail is None or record.offset < tail.next_offset:
            return  # a device not seen yet starts a run with its next readings anyway
        if tail.last_ts_ms is not None and block.timestamps_ms[0] <= tail.last_ts_ms:
            return  # older than the run: refused for its order as well
        self._new_run(key)
        tail.next_offset = record.offset + 1
        pending.touched[key] = tail

    def _inputs(self, window: Window, baseline: RunBaseline | None) -> np.ndarray:
        """A window as the graph takes it (C' x T): with its calendar channels, and adapted to its run's baseline."""
        assert self.model is not None
        values = self.model.inputs(window.values, window.timestamps_ms)
        return (values if baseline is None else baseline.adapt(values, len(self.model.spec.channels))).T

    def _judge(self, windows: list[tuple[Window, Source, RunBaseline | None]]) -> list[WindowResult]:
        assert self.model is not None
        if not windows:
            return []
        meta, spec = self.model.metadata, self.model.spec
        batch = np.stack([self._inputs(w, baseline) for w, _, baseline in windows])  # N x C' x T
        parts = [self.model.score(batch[i : i + SCORE_CHUNK]) for i in range(0, len(batch), SCORE_CHUNK)]
        scores = np.concatenate([p.score for p in parts])
        errors = np.concatenate([p.anomaly_map.sum(axis=2) for p in parts])  # N x C
        restored = np.concatenate([p.reconstruction for p in parts]) if self.publish is not None else None
        detected_at = datetime.now(UTC)
        results = []
        for i, (window, source, baseline) in enumerate(windows):
            score = float(scores[i])
            if not (np.isfinite(score) and np.isfinite(errors[i]).all()):
                log.error("%s: model output is not finite for device %s; window skipped", source, window.device_id)
                continue
            total = float(errors[i].sum())
            shares = errors[i] / total if total > 0 else np.zeros_like(errors[i])
            top = np.argsort(-shares, kind="stable")[:TOP_CHANNELS]
            results.append(
                WindowResult(
                    source=source,
                    device_id=window.device_id,
                    line_id=window.line_id,
                    window_start=datetime.fromtimestamp(window.start_ms / 1000, UTC),
                    window_end=datetime.fromtimestamp(window.end_ms / 1000, UTC),
                    detected_at=detected_at,
                    score=score,
                    threshold=meta.image_threshold,
                    is_anomaly=score > meta.image_threshold,
                    top_channels=[{"channel": spec.channels[c], "share": round(float(shares[c]), 4)} for c in top],
                )
            )
            if restored is not None and self.publish is not None:
                raw = restored[i].T if baseline is None else baseline.restore(restored[i].T)
                self.publish(self._denoised(window, raw, source, score))
        return results

    def _denoised(self, window: Window, restored: np.ndarray, source: Source, score: float) -> EncodedFrame:
        """The model's reconstruction of a window (T x C, raw units) in the sensor wire format, with where it came
        from."""
        assert self.model is not None
        stamps = window.timestamps_ms
        return encode_readings(
            restored,
            device_id=window.device_id,
            channels=self.model.spec.channels,
            start_ms=float(stamps[0]),
            offsets_ms=[float(v) for v in stamps - stamps[0]],
            line_id=window.line_id,
            extra_headers=[
                ("source-topic", source.topic.encode()),
                ("source-partition", str(source.partition).encode()),
                ("source-offset", str(source.offset).encode()),
                ("window-score", repr(score).encode()),
                ("model-version", self.model.metadata.model_version.encode()),
            ],
        )


def _refused_for_non_finite(record: Any, max_bytes: int) -> SensorBlock | None:
    """The readings of a record that the wire rules refuse for a NaN/inf reading and nothing else (read again with
    those readings zeroed, for its device and time); None for any other record."""
    value = record.value
    if not value or len(value) % 4:
        return None
    readings = np.frombuffer(value, dtype="<f4")
    if np.isfinite(readings).all():
        return None
    zeroed = np.where(np.isfinite(readings), readings, 0).astype("<f4").tobytes()
    try:
        return parse_readings(zeroed, record.headers, max_bytes)
    except InvalidMessageError:
        return None
