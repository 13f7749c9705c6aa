"""Sensor logs: SKAB-style CSV files (`;`-separated, a `datetime` column, one column per sensor) and windows."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from training.errors import DatasetError

TIME_COLUMN = "datetime"
# Label columns are read for evaluation only: training and calibration never see them.
LABEL_COLUMN = "anomaly"
LABEL_COLUMNS = ("anomaly", "changepoint")


@dataclass(frozen=True)
class SensorSeries:
    """One recording: readings (T x C, raw units), channel names in order, optional point labels."""

    name: str
    channels: tuple[str, ...]
    values: np.ndarray
    labels: np.ndarray | None = None
    sample_rate_hz: float | None = None


def read_sensor_csv(path: Path) -> SensorSeries:
    """Read one CSV; the delimiter is `;` (SKAB) or `,`, whichever the header line uses."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(str(path), f"unreadable ({type(exc).__name__})") from exc
    if len(lines) < 2:
        raise DatasetError(str(path), "needs a header line and at least one row of readings")
    delimiter = ";" if lines[0].count(";") >= lines[0].count(",") else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [name.strip() for name in rows[0]]
    channels = tuple(name for name in header if name not in (TIME_COLUMN, *LABEL_COLUMNS))
    if not channels:
        raise DatasetError(str(path), f"no sensor columns in the header {header}")
    columns = {name: index for index, name in enumerate(header)}
    values = np.empty((len(rows) - 1, len(channels)), dtype=np.float32)
    labels = np.zeros(len(rows) - 1, dtype=np.int8) if LABEL_COLUMN in columns else None
    for number, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DatasetError(str(path), f"line {number + 2} has {len(row)} fields, the header {len(header)}")
        try:
            values[number] = [float(row[columns[name]]) for name in channels]
            if labels is not None:
                labels[number] = int(float(row[columns[LABEL_COLUMN]]) > 0)
        except ValueError as exc:
            raise DatasetError(str(path), f"line {number + 2}: {exc}") from exc
    if not np.all(np.isfinite(values)):
        raise DatasetError(str(path), "readings contain NaN or infinity")
    times = [row[columns[TIME_COLUMN]] for row in rows[1:]] if TIME_COLUMN in columns else []
    return SensorSeries(path.stem, channels, values, labels, _sample_rate(times))


def _sample_rate(times: list[str]) -> float | None:
    """Samples per second from the median step between timestamps; None without usable timestamps."""
    try:
        seconds = np.array([datetime.fromisoformat(t).timestamp() for t in times])
    except ValueError:
        return None
    steps = np.diff(seconds)
    steps = steps[steps > 0]
    return float(1 / np.median(steps)) if steps.size else None


def sensor_files(path: Path) -> list[Path]:
    """The CSV file itself, or every CSV under a folder (sorted, recursive)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(str(path), "no such file or folder")
    files = sorted(path.rglob("*.csv"))
    if not files:
        raise DatasetError(str(path), "no .csv files in this folder")
    return files


def read_sensor_data(path: Path) -> list[SensorSeries]:
    """Every recording under `path`; all must have the same sensor columns in the same order."""
    series = [read_sensor_csv(file) for file in sensor_files(path)]
    for other in series[1:]:
        if other.channels != series[0].channels:
            raise DatasetError(other.name, f"sensor columns {other.channels} differ from {series[0].channels}")
    return series


def sliding_windows(values: np.ndarray, length: int, stride: int) -> np.ndarray:
    """Windows N x C x T (float32) over a T x C recording; empty when the recording is shorter than `length`."""
    if len(values) < length:
        return np.empty((0, values.shape[1], length), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)[::stride]
    return np.ascontiguousarray(view, dtype=np.float32)


def window_starts(n_samples: int, length: int, stride: int) -> np.ndarray:
    return np.arange(0, n_samples - length + 1, stride)


def files_digest(files: list[Path]) -> str:
    """SHA-256 over the training files' bytes, stored with the model to trace what it learned from."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()
