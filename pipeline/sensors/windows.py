"""Sliding windows over each device's readings: the model's window_length and stride, continued across records,
batches and restarts from a stored tail (the readings after the last emitted window's stride).

The rules across records of one device (each record's own checks are in pipeline/sensors/wire.py):
- channels: the model's channels must all be in the record (else dead-lettered, naming the missing ones); they are
  taken in the model's order (a different order is repaired) and extra channels are ignored;
- order: a record whose first sample is not after the device's last sample (out of order or a duplicate) is
  dead-lettered whole: no reading is scored twice or out of time order;
- gaps: where consecutive samples are more than `gap_periods` periods apart, the readings before the gap that do not
  fill a window are dropped and a new window starts after it: no window spans a gap; gaps are counted and logged.
  The period is the record's period-ms, else the model's sample rate, else the median spacing of the record's
  samples, else (one reading per record) the smallest spacing seen for the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from pipeline.contract import SensorSpec
from pipeline.errors import InvalidMessageError
from pipeline.sensors.wire import SensorBlock


@dataclass
class DeviceTail:
    """One device's window state on one partition: readings not yet in an emitted window, and where it stands."""

    device_id: str
    line_id: str
    timestamps_ms: np.ndarray  # k < window_length, float64
    values: np.ndarray  # k x C float32, in the model's channel order
    last_ts_ms: float | None = None  # the device's last sample, emitted or not
    period_ms: float | None = None
    next_offset: int = 0  # the offset after the last record applied to this state

    @classmethod
    def empty(cls, device_id: str, line_id: str, channels: int) -> DeviceTail:
        return cls(device_id, line_id, np.zeros(0, np.float64), np.zeros((0, channels), np.float32))


@dataclass(frozen=True)
class Window:
    """A full window, completed by one record."""

    device_id: str
    line_id: str
    timestamps_ms: np.ndarray  # T, float64 Unix ms
    values: np.ndarray  # T x C float32, raw readings in the model's channel order

    @property
    def start_ms(self) -> float:
        return float(self.timestamps_ms[0])

    @property
    def end_ms(self) -> float:
        return float(self.timestamps_ms[-1])


@dataclass
class Fed:
    """What one record did to its device: the windows it completed and the gaps it crossed."""

    windows: list[Window] = field(default_factory=list)
    gaps: int = 0


def select_channels(block: SensorBlock, spec: SensorSpec) -> np.ndarray:
    """The block's readings in the model's channel order (S x C); InvalidMessageError when some are missing."""
    index = {name: i for i, name in enumerate(block.channels)}
    missing = [name for name in spec.channels if name not in index]
    if missing:
        shown = ", ".join(missing[:5]) + ("..." if len(missing) > 5 else "")
        raise InvalidMessageError(f"missing channels: {len(missing)} of the model's {len(spec.channels)} ({shown})")
    order = [index[name] for name in spec.channels]
    return block.values if order == list(range(len(block.channels))) else block.values[:, order]


def period_of(block: SensorBlock, spec: SensorSpec, previous: float | None, last_ts_ms: float | None) -> float | None:
    if block.period_ms is not None:
        return block.period_ms
    if spec.sample_rate_hz is not None:
        return 1000.0 / spec.sample_rate_hz
    if len(block.timestamps_ms) >= 2:
        return float(np.median(np.diff(block.timestamps_ms)))
    if last_ts_ms is None:
        return previous
    # One reading per record, no declared period: the smallest spacing seen, so that a long pause still reads as a gap.
    step = float(block.timestamps_ms[0]) - last_ts_ms
    return step if previous is None else min(previous, step)


def feed(tail: DeviceTail, block: SensorBlock, spec: SensorSpec, gap_periods: float, offset: int) -> Fed:
    """Append one record's readings to `tail` (updated in place) and cut the windows they complete."""
    readings = select_channels(block, spec)
    if tail.last_ts_ms is not None and block.timestamps_ms[0] <= tail.last_ts_ms:
        kind = "duplicate" if block.timestamps_ms[0] == tail.last_ts_ms else "out-of-order"
        raise InvalidMessageError(
            f"{kind} readings: first sample at {block.timestamps_ms[0]:.3f} ms, device {block.device_id!r} "
            f"already at {tail.last_ts_ms:.3f} ms"
        )
    period = period_of(block, spec, tail.period_ms, tail.last_ts_ms)
    timestamps = np.concatenate([tail.timestamps_ms, block.timestamps_ms])
    values = np.concatenate([tail.values, readings])
    steps = np.diff(np.concatenate([[tail.last_ts_ms], block.timestamps_ms])) if tail.last_ts_ms is not None else None
    cuts: list[int] = []  # index in `timestamps` where a new segment starts after a gap
    if period is not None:
        limit = gap_periods * period
        if steps is not None:
            # steps[i] is the spacing before block sample i; the tail's own spacing was checked when it came.
            cuts = [len(tail.timestamps_ms) + int(i) for i in np.nonzero(steps > limit)[0]]
        else:
            inner = np.diff(block.timestamps_ms)
            cuts = [int(i) + 1 for i in np.nonzero(inner > limit)[0]]
    fed = Fed(gaps=len(cuts))
    bounds = [0, *cuts, len(timestamps)]
    T, S = spec.window_length, spec.window_stride
    rest = len(timestamps)
    for a, b in pairwise(bounds):
        pos = a
        while pos + T <= b:
            fed.windows.append(Window(block.device_id, block.line_id, timestamps[pos : pos + T], values[pos : pos + T]))
            pos += S
        rest = pos
    tail.timestamps_ms = timestamps[rest:].copy()
    tail.values = values[rest:].copy()
    tail.last_ts_ms = float(block.timestamps_ms[-1])
    tail.period_ms = period
    tail.line_id = block.line_id
    tail.next_offset = offset + 1
    return fed
