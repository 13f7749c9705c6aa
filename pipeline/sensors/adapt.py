"""Operating-point adaptation: each run's readings re-expressed against the level and scale of its own first rows.

A line changes product, load or set point; the rig's normal rows then sit far from the training statistics (SKAB's
valve days: accelerometers and flow 40-58 std off the anomaly-free day, with a tenth of its noise). The first
`rows` readings of a run (a recording, or a stretch after a gap in logging: a restart) are taken as normal: each
channel's median is its level and its std its scale, and every reading of the run becomes (reading - level) / scale.
The model is trained on readings adapted the same way, so a level change later in the run (a closing valve's flow
drop) stays visible, in units of the run's own spread. The adaptation rows themselves are never judged: at run time
there is no baseline until they have arrived.

Training (training.sensors.train) and evaluation (training.sensors.evaluate) call `adapt_run`; the consumer calls
`feed_adapted`, which cuts a device's runs where pipeline.sensors.windows cuts its windows (a gap), holds each run's
first rows back as the baseline and hands out the windows after them with it; both apply `RunBaseline.adapt`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from pipeline.contract import SensorSpec
from pipeline.sensors.windows import DeviceTail, Window, feed, period_of
from pipeline.sensors.wire import SensorBlock

SCALE_FLOOR = 1e-3  # of the channel's level: a channel still in the first rows (a quantised flow meter) gets this


@dataclass(frozen=True)
class RunBaseline:
    """One run's per-channel level (median of its first rows) and scale (their std, floored)."""

    level: np.ndarray  # C
    scale: np.ndarray  # C

    @classmethod
    def of(cls, first_rows: np.ndarray) -> RunBaseline:
        values = np.asarray(first_rows, dtype=np.float64)
        level = np.median(values, axis=0)
        scale = np.maximum(values.std(axis=0), SCALE_FLOOR * np.abs(level) + 1e-6)
        return cls(level, scale)

    def apply(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float64) - self.level) / self.scale).astype(np.float32)

    def adapt(self, values: np.ndarray, channels: int) -> np.ndarray:
        """Readings T x C' with their first `channels` columns (the sensors) adapted; calendar columns after them are
        left alone."""
        adapted = np.array(values, dtype=np.float32)
        adapted[:, :channels] = self.apply(values[:, :channels])
        return adapted

    def restore(self, adapted: np.ndarray) -> np.ndarray:
        """Adapted sensor readings T x C back in raw units (a reconstruction, for the denoised topic)."""
        return (np.asarray(adapted, dtype=np.float64) * self.scale + self.level).astype(np.float32)


def adapt_run(values: np.ndarray, rows: int, channels: int) -> np.ndarray | None:
    """A run's readings T x C' with its first `channels` columns (the sensors; calendar columns after them are left
    alone) adapted to the baseline of its first `rows` rows; None when the run is shorter than that (it never gets a
    baseline). `rows` 0: the readings unchanged."""
    if rows == 0:
        return values
    if len(values) < rows:
        return None
    return RunBaseline.of(values[:rows, :channels]).adapt(values, channels)


def adapt_runs(
    values: np.ndarray, stretches: tuple[slice, ...], rows: int, channels: int
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """A recording's readings with each stretch (a run) adapted by `adapt_run`, NaN outside the stretches and in
    those shorter than `rows`; and the stretches that were adapted."""
    adapted = np.full(values.shape, np.nan, dtype=np.float32)
    kept = []
    for stretch in stretches:
        run = adapt_run(values[stretch], rows, channels)
        if run is not None:
            adapted[stretch] = run
            kept.append(stretch)
    return adapted, tuple(kept)


@dataclass
class AdaptedFed:
    """What one record did to a device under an adapted model: the windows it completed, each with its run's
    baseline, the gaps it crossed, and the baseline of the run it leaves the device in (None: still arriving)."""

    windows: list[tuple[Window, RunBaseline]]
    gaps: int
    baseline: RunBaseline | None


def feed_adapted(
    tail: DeviceTail,
    baseline: RunBaseline | None,
    block: SensorBlock,
    spec: SensorSpec,
    gap_periods: float,
    offset: int,
) -> AdaptedFed:
    """`feed` for a model with `adapt_rows`: a run (what follows the device's first reading, or a gap) first collects
    `adapt_rows` readings in `tail` (updated in place) and cuts no window from them; they become the run's baseline,
    and the windows after them are cut on the model's stride, as `evaluate` cuts them from the run's adapted rows.
    InvalidMessageError, as from `feed`, before `tail` changes."""
    rows = spec.adapt_rows
    assert rows > 0 and (baseline is not None or len(tail.timestamps_ms) < rows)
    # The record is fed in parts (the rows of each run, the baseline rows apart): each keeps the whole record's
    # period, which `feed` would otherwise take from the part's own spacing.
    period = period_of(block, spec, tail.period_ms, tail.last_ts_ms)
    block = replace(block, period_ms=period) if period is not None else block
    starts = run_starts(tail, block, spec, gap_periods)
    collect = replace(spec, window_length=rows, window_stride=rows)  # the baseline rows: one "window" of them
    out = AdaptedFed([], 0, baseline)
    for a, b in pairwise(sorted({0, *starts, len(block.timestamps_ms)})):
        part = _rows(block, a, b)
        if a in starts:  # a new run: what the tail held belongs to the one before (feed drops it too)
            out.baseline = None
            tail.timestamps_ms, tail.values = tail.timestamps_ms[:0], tail.values[:0]
        if out.baseline is None:
            need = rows - len(tail.timestamps_ms)
            fed = feed(tail, _rows(part, 0, need), collect, gap_periods, offset)
            out.gaps += fed.gaps
            if fed.windows:  # the run's first `rows` readings have all arrived; the tail is empty again
                out.baseline = RunBaseline.of(fed.windows[0].values)
            part = _rows(part, need, len(part.timestamps_ms))
        if out.baseline is not None and len(part.timestamps_ms):
            fed = feed(tail, part, spec, gap_periods, offset)
            out.gaps += fed.gaps
            out.windows += [(window, out.baseline) for window in fed.windows]
    return out


def run_starts(tail: DeviceTail, block: SensorBlock, spec: SensorSpec, gap_periods: float) -> list[int]:
    """Rows of `block` where a new run starts after a gap (0: before its first reading), found by `feed` itself, so
    that runs and windows restart at the same rows: fed a window it can never fill, from a copy of the tail without
    its readings, `feed` keeps exactly the rows after the last gap. InvalidMessageError as from `feed`."""
    starts: list[int] = []
    end = len(block.timestamps_ms)
    hold = replace(spec, window_length=end + 1, window_stride=1)
    while end > 0:
        probe = replace(tail, timestamps_ms=tail.timestamps_ms[:0], values=tail.values[:0])
        if not feed(probe, _rows(block, 0, end), hold, gap_periods, 0).gaps:
            break
        end -= len(probe.timestamps_ms)
        starts.append(end)
    return starts[::-1]


def _rows(block: SensorBlock, start: int, stop: int) -> SensorBlock:
    return replace(block, timestamps_ms=block.timestamps_ms[start:stop], values=block.values[start:stop])
