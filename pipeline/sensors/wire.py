"""The sensor wire format: a block of readings of one device, float32 in the Kafka value, metadata in headers.

Value: little-endian float32, row-major samples x channels (one reading vector is a block of one sample).
Headers: lg-version, content-type `application/x-sensor`, device-id, line-id, channels (comma-separated names, in
the value's column order), capture-ts-ms (the first sample, Unix ms, may carry a fraction), then either period-ms
(a fixed period) or sample-offsets-ms (comma-separated ms from the first sample, one per sample), optional
sample-rate-hz, seq. Same version, size and identifier rules as frames (pipeline/wire.py).

The record-level bad-reading rule is here: a block with a NaN/inf reading, timestamps that do not strictly
increase, or a value that does not fit its channels is dead-lettered whole, with the reason; nothing is repaired
or scored from it. The rules across records of one device (channels against the model, order, gaps) are in
pipeline/sensors/windows.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from pipeline.errors import InvalidMessageError
from pipeline.wire import (
    H_CAPTURED,
    H_CONTENT_TYPE,
    H_LINE,
    H_SEQ,
    H_VERSION,
    MAX_ID_CHARS,
    WIRE_VERSION,
    EncodedFrame,
    Headers,
    header_values,
    identifier_header,
    seq_header,
    shown,
)

SENSOR = "application/x-sensor"
H_DEVICE = "device-id"
H_CHANNELS = "channels"
H_PERIOD = "period-ms"
H_OFFSETS = "sample-offsets-ms"
H_RATE = "sample-rate-hz"
MAX_CHANNELS = 1024
MAX_SAMPLES = 65_536  # one record; longer recordings are sent as several blocks
READING = np.dtype("<f4")
MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_799_000  # Unix ms of the years 1 and 9999: what a datetime holds


@dataclass(frozen=True)
class SensorBlock:
    """The checked readings of one record."""

    device_id: str
    line_id: str
    channels: tuple[str, ...]
    timestamps_ms: np.ndarray  # S, float64 Unix ms, strictly increasing
    values: np.ndarray  # S x C float32, finite
    seq: int
    period_ms: float | None = None  # the fixed period the sender declared (None: per-sample offsets)
    sample_rate_hz: float | None = None

    @property
    def captured_at(self) -> datetime:
        return datetime.fromtimestamp(float(self.timestamps_ms[0]) / 1000, UTC)


def is_sensor_record(headers: Headers | None) -> bool:
    """Whether a record carries sensor readings (routed to the sensor model) rather than a frame."""
    return any(name == H_CONTENT_TYPE and raw == SENSOR.encode() for name, raw in headers or [])


def encode_readings(
    values: np.ndarray,
    *,
    device_id: str,
    channels: list[str] | tuple[str, ...],
    start_ms: float,
    period_ms: float | None = None,
    offsets_ms: list[float] | None = None,
    line_id: str = "line-1",
    seq: int = 0,
    sample_rate_hz: float | None = None,
    extra_headers: Headers | None = None,
) -> EncodedFrame:
    """Encode an S x C block of readings (or a C vector) with its headers; the key is the device id."""
    block = np.atleast_2d(np.asarray(values, dtype=READING))
    headers: Headers = [
        (H_VERSION, WIRE_VERSION.encode()),
        (H_CONTENT_TYPE, SENSOR.encode()),
        (H_DEVICE, device_id.encode()),
        (H_LINE, line_id.encode()),
        (H_CHANNELS, ",".join(channels).encode()),
        (H_CAPTURED, _number(start_ms).encode()),
        (H_SEQ, str(seq).encode()),
    ]
    if period_ms is not None:
        headers.append((H_PERIOD, _number(period_ms).encode()))
    if offsets_ms is not None:
        headers.append((H_OFFSETS, ",".join(_number(v) for v in offsets_ms).encode()))
    if sample_rate_hz is not None:
        headers.append((H_RATE, _number(sample_rate_hz).encode()))
    headers += extra_headers or []
    return EncodedFrame(key=device_id.encode(), value=np.ascontiguousarray(block).tobytes(), headers=headers)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_readings(value: bytes | None, headers: Headers | None, max_bytes: int) -> SensorBlock:
    """Check and read one sensor record; InvalidMessageError (-> dead-letter topic) names what is wrong."""
    values = header_values(headers or [])
    for name in (H_DEVICE, H_CHANNELS, H_CAPTURED):
        if not values.get(name):
            raise InvalidMessageError(f"missing header {name!r}")
    if values.get(H_VERSION, WIRE_VERSION) != WIRE_VERSION:
        raise InvalidMessageError(f"unsupported wire version {shown(values[H_VERSION])}")
    channels = tuple(values[H_CHANNELS].split(","))
    if len(channels) > MAX_CHANNELS or any(not c or c != c.strip() or not c.isprintable() for c in channels):
        raise InvalidMessageError(f"bad header {H_CHANNELS!r}: {shown(values[H_CHANNELS])}")
    if len(set(channels)) != len(channels):
        raise InvalidMessageError(f"header {H_CHANNELS!r} names a channel twice: {shown(values[H_CHANNELS])}")
    if not value:
        raise InvalidMessageError("empty value")
    if len(value) > max_bytes:
        raise InvalidMessageError(f"value of {len(value)} bytes exceeds max_frame_bytes={max_bytes}")
    row = READING.itemsize * len(channels)
    if len(value) % row:
        raise InvalidMessageError(f"value of {len(value)} bytes is not whole samples of {len(channels)} float32")
    samples = len(value) // row
    if samples > MAX_SAMPLES:
        raise InvalidMessageError(f"{samples} samples in one record, at most {MAX_SAMPLES} allowed")
    readings = np.frombuffer(value, dtype=READING).reshape(samples, len(channels))
    bad = ~np.isfinite(readings)
    if bad.any():
        sample, channel = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidMessageError(
            f"non-finite reading (NaN/inf): {int(bad.sum())} of them, first at sample {sample} channel "
            f"{shown(channels[channel])}"
        )
    start = _float(values, H_CAPTURED)
    period = _float(values, H_PERIOD) if values.get(H_PERIOD) else None
    timestamps = _timestamps(values, start, period, samples)
    rate = _float(values, H_RATE) if values.get(H_RATE) else None
    if rate is not None and rate <= 0:
        raise InvalidMessageError(f"header {H_RATE!r} must be positive: {shown(values[H_RATE])}")
    return SensorBlock(
        device_id=identifier_header(values, H_DEVICE, MAX_ID_CHARS),
        line_id=identifier_header(values, H_LINE, MAX_ID_CHARS) if values.get(H_LINE) else "unknown",
        channels=channels,
        timestamps_ms=timestamps,
        values=readings.astype(np.float32),
        seq=seq_header(values.get(H_SEQ, "0")),
        period_ms=period,
        sample_rate_hz=rate,
    )


def _timestamps(values: dict[str, str], start: float, period: float | None, samples: int) -> np.ndarray:
    if period is not None and values.get(H_OFFSETS):
        raise InvalidMessageError(f"headers {H_PERIOD!r} and {H_OFFSETS!r} both given; send one")
    if period is not None:
        if period <= 0:
            raise InvalidMessageError(f"header {H_PERIOD!r} must be positive: {shown(values[H_PERIOD])}")
        return _checked(start + period * np.arange(samples, dtype=np.float64))
    if not values.get(H_OFFSETS):
        if samples == 1:
            return np.array([start], dtype=np.float64)
        raise InvalidMessageError(f"{samples} samples need header {H_PERIOD!r} or {H_OFFSETS!r}")
    try:
        offsets = np.array([float(v) for v in values[H_OFFSETS].split(",")], dtype=np.float64)
    except ValueError as exc:
        raise InvalidMessageError(f"bad header {H_OFFSETS!r}: {shown(values[H_OFFSETS])}") from exc
    if len(offsets) != samples:
        raise InvalidMessageError(f"header {H_OFFSETS!r} has {len(offsets)} offsets for {samples} samples")
    if not np.isfinite(offsets).all() or offsets[0] != 0:
        raise InvalidMessageError(f"header {H_OFFSETS!r} must start at 0 and be finite")
    steps = np.diff(offsets)
    if (steps <= 0).any():
        at = int(np.argmax(steps <= 0)) + 1
        kind = "duplicate" if steps[at - 1] == 0 else "out-of-order"
        raise InvalidMessageError(f"{kind} timestamp at sample {at}: timestamps must strictly increase")
    return _checked(start + offsets)


def _checked(timestamps: np.ndarray) -> np.ndarray:
    """The absolute timestamps, checked again: each header can be fine and their sum not. A step below a float64's
    resolution at this epoch (1e-9 ms) adds nothing, and a long period or a far start runs past what a datetime
    holds, which would fail only when the window is stored, for the whole batch."""
    if len(timestamps) > 1 and (np.diff(timestamps) <= 0).any():
        at = int(np.argmax(np.diff(timestamps) <= 0)) + 1
        raise InvalidMessageError(f"timestamp at sample {at} equals the one before: timestamps must strictly increase")
    if timestamps[0] < MIN_MS or timestamps[-1] > MAX_MS:
        raise InvalidMessageError(
            f"timestamps run from {timestamps[0]:.0f} to {timestamps[-1]:.0f} ms, outside the years 1 to 9999"
        )
    return timestamps


def _float(values: dict[str, str], name: str) -> float:
    text = values[name]
    try:
        number = float(text)
    except ValueError as exc:
        raise InvalidMessageError(f"bad header {name!r}: {shown(text)}") from exc
    # Unix ms up to year 9999 (what a datetime holds); inf/NaN never.
    if not math.isfinite(number) or abs(number) > MAX_MS:
        raise InvalidMessageError(f"header {name!r} out of range: {shown(text)}")
    return number
