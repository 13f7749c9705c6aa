"""Tiny synthetic sensor recordings in the SKAB CSV layout (`;`, datetime, sensors, optional labels)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

CHANNELS = ("Pressure", "Current", "Voltage")


def synthetic_readings(rows: int, seed: int) -> np.ndarray:
    """Three periodic channels with noise, at different scales (a voltage near 230 V among small ones)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    pressure = 0.3 * np.sin(2 * np.pi * t / 20) + 0.02 * rng.standard_normal(rows)
    current = 1.0 + 0.2 * np.cos(2 * np.pi * t / 20) + 0.02 * rng.standard_normal(rows)
    voltage = 230 + 2 * np.sin(2 * np.pi * t / 10) + 0.2 * rng.standard_normal(rows)
    return np.stack([pressure, current, voltage], axis=1)


def write_sensor_csv(
    path: Path, values: np.ndarray, labels: np.ndarray | None = None, changepoints: bool = True
) -> Path:
    start = datetime(2026, 11, 29, 8, 0, 0)
    header = ["datetime", *CHANNELS] + (["anomaly", "changepoint"] if labels is not None else [])
    lines = [";".join(header)]
    for index, row in enumerate(values):
        cells = [(start + timedelta(seconds=index)).isoformat(sep=" "), *(f"{v:.6f}" for v in row)]
        if labels is not None:
            cells += [f"{float(labels[index]):.1f}", "0.0" if not changepoints else f"{float(index == 0):.1f}"]
        lines.append(";".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def labelled_recording(path: Path, rows: int = 360, seed: int = 7) -> Path:
    """Normal readings with a fault in rows 240-320: the pressure steps up and loses its rhythm."""
    values = synthetic_readings(rows, seed)
    labels = np.zeros(rows, dtype=int)
    labels[240:320] = 1
    values[240:320, 0] = 1.5 + 0.02 * np.random.default_rng(seed).standard_normal(80)
    return write_sensor_csv(path, values, labels)
