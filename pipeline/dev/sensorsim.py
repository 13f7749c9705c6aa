"""Sensor simulator: replay a sensor CSV (SKAB's `datetime;Channel1;...;anomaly;changepoint`, or any layout that
pipeline.sensors.csvfile reads) to Kafka in the sensor wire format, one or more samples per record, at a chosen
speed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.dev.simulator import PublishStats
from pipeline.sensors.csvfile import read_sensor_table
from pipeline.sensors.wire import EncodedFrame, encode_readings
from pipeline.settings import Settings

NO_TIME_PERIOD_MS = 1000.0  # a CSV without a time column: its rows are taken as one second apart, from now


@dataclass(frozen=True)
class Recording:
    """A CSV's readings: channel names, sample times and the S x C values (labels when the file has them)."""

    channels: tuple[str, ...]
    timestamps_ms: np.ndarray  # S, float64 Unix ms (naive datetimes are read as UTC)
    values: np.ndarray  # S x C float32; NaN where the file has no reading (its record is dead-lettered)
    anomaly: np.ndarray | None = None  # S, 0/1


def read_csv(path: Path) -> Recording:
    """The CSV by pipeline.sensors.csvfile's rules (delimiter, time and label columns, order, missing readings)."""
    table = read_sensor_table(path)
    stamps = table.timestamps_ms
    if stamps is None:
        stamps = time.time() * 1000 + NO_TIME_PERIOD_MS * np.arange(len(table.values), dtype=np.float64)
    return Recording(table.channels, stamps, table.values, table.labels)


def blocks(
    recording: Recording, device: str, line: str = "line-1", block: int = 1, start_seq: int = 0
) -> Iterator[EncodedFrame]:
    """The recording as records of `block` samples each, with their own per-sample offsets."""
    for seq, first in enumerate(range(0, len(recording.timestamps_ms), block), start=start_seq):
        stamps = recording.timestamps_ms[first : first + block]
        yield encode_readings(
            recording.values[first : first + block],
            device_id=device,
            channels=recording.channels,
            start_ms=float(stamps[0]),
            offsets_ms=[float(v) for v in stamps - stamps[0]] if len(stamps) > 1 else None,
            line_id=line,
            seq=seq,
        )


def publish_readings(
    settings: Settings,
    source: Path,
    topic: str | None = None,
    rate: float | None = None,
    device: str = "sensor-1",
    line: str = "line-1",
    block: int = 1,
) -> PublishStats:
    """Publish a CSV's readings at `rate` samples/s (None: as fast as possible); returns once all are acknowledged."""
    from kafka import KafkaProducer

    recording = read_csv(source)
    producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=5, batch_size=1 << 20)
    interval = block / rate if rate else 0.0
    sent = sent_bytes = 0
    start = time.monotonic()
    try:
        for index, encoded in enumerate(blocks(recording, device, line, block)):
            if interval:
                delay = start + index * interval - time.monotonic()  # paced against the start: no drift
                if delay > 0:
                    time.sleep(delay)
            producer.send(topic or settings.frames_topic, key=encoded.key, value=encoded.value, headers=encoded.headers)
            sent += 1
            sent_bytes += len(encoded.value)
        producer.flush()
    finally:
        producer.close()
    injected = int(recording.anomaly.sum()) if recording.anomaly is not None else 0
    return PublishStats(sent=sent, defects_injected=injected, bytes_sent=sent_bytes, seconds=time.monotonic() - start)
