"""Calendar inputs of a sensor model: where each reading falls in the day and the week, from its timestamp.

One function serves training, evaluation and the consumer, so the line computes exactly what the model was trained
on. Each period gives two channels, sin and cos of its phase (so 23:59 sits next to 00:00), in UTC: a plant whose
rhythm follows local time sees a constant phase offset, which the model learns; a daylight-saving change shifts it
by an hour twice a year.
"""

from __future__ import annotations

import numpy as np

CALENDAR_PERIODS_MS = {"day": 86_400_000.0, "week": 7 * 86_400_000.0}


def calendar_channel_names(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The input channels `kinds` add after the sensor channels, in order."""
    return tuple(f"{kind}_{part}" for kind in kinds for part in ("sin", "cos"))


def calendar_columns(timestamps_ms: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """T x 2K float32 for T timestamps (Unix ms): sin and cos of each kind's phase, in the order of `kinds`."""
    stamps = np.asarray(timestamps_ms, dtype=np.float64)
    columns = []
    for kind in kinds:
        # float64 remainder first: a phase taken in float32 from 1.7e12 ms would be off by minutes
        phase = 2 * np.pi * np.mod(stamps, CALENDAR_PERIODS_MS[kind]) / CALENDAR_PERIODS_MS[kind]
        columns += [np.sin(phase), np.cos(phase)]
    if not columns:
        return np.zeros((len(stamps), 0), dtype=np.float32)
    return np.stack(columns, axis=1).astype(np.float32)


def with_calendar(values: np.ndarray, timestamps_ms: np.ndarray | None, kinds: tuple[str, ...]) -> np.ndarray:
    """Readings T x C with the calendar channels appended (T x (C + 2K)); `values` itself when `kinds` is empty.

    ValueError without timestamps: a calendar model cannot place readings that carry no time.
    """
    if not kinds:
        return values
    if timestamps_ms is None:
        raise ValueError(f"the model takes calendar inputs ({', '.join(kinds)}): readings need timestamps")
    return np.concatenate([values, calendar_columns(timestamps_ms, kinds)], axis=1).astype(np.float32)
