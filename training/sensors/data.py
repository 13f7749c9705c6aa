"""Sensor recordings for training and evaluation: CSV files read by pipeline.sensors.csvfile (its rules: delimiter,
time and label columns, missing readings, order), cut into stretches that windows may span, and into windows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.sensors.csvfile import SensorCsvError, read_sensor_table, segments
from training.errors import DatasetError

DEFAULT_GAP_PERIODS = 3.0  # the consumer's sensor_gap_periods default


@dataclass(frozen=True)
class CsvColumns:
    """Which columns of the CSV files are what; None: pipeline.sensors.csvfile's defaults (every non-time, non-label
    column is a reading). `gap_periods`: a time step above this many median steps splits the recording as the
    consumer does; None keeps rows consecutive whatever their timestamps (the SKAB notebooks' row protocol)."""

    time_column: str | None = None
    label_column: str | None = None
    channels: tuple[str, ...] | None = None
    gap_periods: float | None = DEFAULT_GAP_PERIODS


@dataclass(frozen=True)
class SensorSeries:
    """One recording: readings (T x C, raw units, NaN where missing), channel names in order, optional point
    labels, and the stretches of rows that windows may span (every reading present, no time gap)."""

    name: str
    channels: tuple[str, ...]
    values: np.ndarray
    labels: np.ndarray | None = None
    sample_rate_hz: float | None = None
    stretches: tuple[slice, ...] = field(default=())
    timestamps_ms: np.ndarray | None = None  # T float64 Unix ms; None when the file has no time column

    def parts(self, start: int = 0, stop: int | None = None) -> list[np.ndarray]:
        """The readings of each stretch, clipped to rows [start, stop): arrays with no missing reading."""
        stop = len(self.values) if stop is None else stop
        clipped = (slice(max(s.start, start), min(s.stop, stop)) for s in self.stretches)
        return [self.values[s] for s in clipped if s.stop > s.start]


def read_sensor_csv(path: Path, columns: CsvColumns = CsvColumns()) -> SensorSeries:
    """Read one CSV (DatasetError, one line, when it cannot be read as sensor readings)."""
    try:
        table = read_sensor_table(
            path, time_column=columns.time_column, label_column=columns.label_column, channels=columns.channels
        )
    except SensorCsvError as exc:
        raise DatasetError(str(path), str(exc).removeprefix(f"{path}: ")) from exc
    stretches = tuple(segments(table, columns.gap_periods))
    return SensorSeries(
        table.name, table.channels, table.values, table.labels, table.sample_rate_hz, stretches, table.timestamps_ms
    )


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


def read_sensor_data(path: Path, columns: CsvColumns = CsvColumns()) -> list[SensorSeries]:
    """Every recording under `path`; all must have the same sensor columns in the same order."""
    series = [read_sensor_csv(file, columns) for file in sensor_files(path)]
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
