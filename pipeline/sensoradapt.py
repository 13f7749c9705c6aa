"""Operating-point adaptation: each run's readings re-expressed against the level and scale of its own first rows.

A line changes product, load or set point; the rig's normal rows then sit far from the training statistics (SKAB's
valve days: accelerometers and flow 40-58 std off the anomaly-free day, with a tenth of its noise). The first
`rows` readings of a run (a recording, or a stretch after a gap in logging: a restart) are taken as normal: each
channel's median is its level and its std its scale, and every reading of the run becomes (reading - level) / scale.
The model is trained on readings adapted the same way, so a level change later in the run (a closing valve's flow
drop) stays visible, in units of the run's own spread. The adaptation rows themselves are never judged: at run time
there is no baseline until they have arrived.

Training (training.sensors.train) and evaluation (training.sensors.evaluate) both call `adapt_run`; nothing else
computes it. The consumer refuses such a model for now (pipeline.sensors.line_sensor_model): a run's baseline
would have to be stored with each device's window state to survive a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def adapt_run(values: np.ndarray, rows: int, channels: int) -> np.ndarray | None:
    """A run's readings T x C' with its first `channels` columns (the sensors; calendar columns after them are left
    alone) adapted to the baseline of its first `rows` rows; None when the run is shorter than that (it never gets a
    baseline). `rows` 0: the readings unchanged."""
    if rows == 0:
        return values
    if len(values) < rows:
        return None
    adapted = np.array(values, dtype=np.float32)
    adapted[:, :channels] = RunBaseline.of(values[:rows, :channels]).apply(values[:, :channels])
    return adapted


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
