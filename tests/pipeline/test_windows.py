"""Sliding windows per device: continuation across records, channel order, the order and gap rules."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.contract import SensorSpec
from pipeline.errors import InvalidMessageError
from pipeline.sensors.windows import DeviceTail, feed
from pipeline.sensors.wire import SensorBlock

SPEC = SensorSpec(("a", "b"), window_length=8, window_stride=3, channel_mean=(0.0, 0.0), channel_std=(1.0, 1.0))


def make_block(start: int, count: int, channels: tuple[str, ...] = ("a", "b"), period: float = 10.0) -> SensorBlock:
    index = np.arange(start, start + count)
    values = np.stack([index * 1.0, index * -1.0], axis=1).astype(np.float32)
    if channels != ("a", "b"):
        values = np.stack([values[:, ("a", "b").index(c)] if c in ("a", "b") else index * 0.0 for c in channels], 1)
    return SensorBlock("dev", "line", channels, 1000.0 + period * index, values.astype(np.float32), 0, period)


def windows_of(sizes: list[int]) -> list[tuple[float, list[float]]]:
    tail = DeviceTail.empty("dev", "line", 2)
    out, start = [], 0
    for offset, size in enumerate(sizes):
        for w in feed(tail, make_block(start, size), SPEC, 3.0, offset).windows:
            out.append((w.start_ms, w.values[:, 0].tolist()))
        start += size
    assert len(tail.timestamps_ms) < SPEC.window_length
    return out


def test_windows_do_not_depend_on_how_readings_are_split_into_records() -> None:
    whole = windows_of([50])
    assert [start for start, _ in whole] == [1000.0 + 10 * 3 * k for k in range(15)]  # (50 - 8) // 3 + 1
    assert whole[1][1] == [3.0, 4, 5, 6, 7, 8, 9, 10]
    assert windows_of([1] * 50) == whole
    assert windows_of([7, 1, 13, 2, 27]) == whole


def test_channels_are_taken_in_the_models_order_and_extras_ignored() -> None:
    tail = DeviceTail.empty("dev", "line", 2)
    fed = feed(tail, make_block(0, 8, channels=("extra", "b", "a")), SPEC, 3.0, 0)
    np.testing.assert_array_equal(fed.windows[0].values[:, 0], np.arange(8))


def test_missing_channels_are_refused() -> None:
    with pytest.raises(InvalidMessageError, match=r"missing channels: 1 of the model's 2 \(b\)"):
        feed(DeviceTail.empty("dev", "line", 2), make_block(0, 8, channels=("a", "c")), SPEC, 3.0, 0)


@pytest.mark.parametrize(("start", "kind"), [(4, "duplicate"), (2, "out-of-order")])
def test_readings_not_after_the_device_are_refused_and_change_nothing(start: int, kind: str) -> None:
    tail = DeviceTail.empty("dev", "line", 2)
    feed(tail, make_block(0, 5), SPEC, 3.0, 0)
    before = (tail.timestamps_ms.copy(), tail.last_ts_ms, tail.next_offset)
    with pytest.raises(InvalidMessageError, match=kind):
        feed(tail, make_block(start, 5), SPEC, 3.0, 1)
    assert (tail.timestamps_ms.tolist(), tail.last_ts_ms, tail.next_offset) == (before[0].tolist(), *before[1:])


def test_no_window_spans_a_gap() -> None:
    tail = DeviceTail.empty("dev", "line", 2)
    first = feed(tail, make_block(0, 10), SPEC, 3.0, 0)  # a window at 0; 3..9 left over
    later = feed(tail, make_block(14, 10), SPEC, 3.0, 1)  # 50 ms after the last sample: over 3 periods
    assert first.gaps == 0 and [w.start_ms for w in first.windows] == [1000.0]
    assert later.gaps == 1 and [w.start_ms for w in later.windows] == [1140.0]
    inner = feed(DeviceTail.empty("dev", "line", 2), _with_gap(), SPEC, 3.0, 0)
    assert inner.gaps == 1 and all(w.end_ms - w.start_ms == 70.0 for w in inner.windows)


def _with_gap() -> SensorBlock:
    stamps = np.concatenate([1000.0 + 10 * np.arange(9), 2000.0 + 10 * np.arange(9)])
    return SensorBlock("dev", "line", ("a", "b"), stamps, np.zeros((18, 2), np.float32), 0, None)


def test_single_readings_without_a_period_still_show_gaps() -> None:
    tail = DeviceTail.empty("dev", "line", 2)
    stamps = [0, 1000, 2000, 4000, 5000, 40_000, 41_000]  # SKAB-like: 1 s, a 2 s step, then a 35 s pause
    gaps = [feed(tail, _one(ms), SPEC, 3.0, i).gaps for i, ms in enumerate(stamps)]
    assert gaps == [0, 0, 0, 0, 0, 1, 0] and tail.period_ms == 1000.0 and len(tail.timestamps_ms) == 2


def _one(ms: float) -> SensorBlock:
    return SensorBlock("dev", "line", ("a", "b"), np.array([ms], np.float64), np.zeros((1, 2), np.float32), 0, None)
