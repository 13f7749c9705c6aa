"""Sensor logs as CSV files, read one way for the simulator, training and evaluation.

What a file may look like, and the rules (stated once, here):
- delimiter: `;` (SKAB), `,` or a tab, whichever the header line uses most;
- time column: the one named by `time_column`, else the first column called datetime, timestamp, time, date or
  ts (any case); values are ISO 8601 datetimes (naive ones are UTC) or Unix seconds / milliseconds (numbers above
  1e11 are milliseconds). A file without one has no timestamps: readings are taken as evenly spaced;
- label columns (read for evaluation only, never as readings): `label_column`, else `anomaly`, `label`,
  `is_anomaly`; `changepoint` is also never a reading;
- readings: every other column, or the ones `channels` names (in that order). A reading that is empty, `nan`,
  `NA`, `null` or not finite is missing: it stays NaN here, and windows never contain it (training and
  evaluation split the recording there; the simulator sends it and the consumer dead-letters its record). A value
  that is not a number at all is an error naming the line and column;
- order: rows are put in time order (stable); a row whose timestamp repeats an earlier one is dropped: the
  consumer would dead-letter it too. Both are counted in `reordered` and `duplicates`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.errors import LineGuardError

TIME_NAMES = ("datetime", "timestamp", "time", "date", "ts")
LABEL_NAMES = ("anomaly", "label", "is_anomaly")
NOT_READINGS = ("changepoint",)
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})
MS_ABOVE = 1e11  # a Unix time above this is in milliseconds (1e11 s is the year 5138)


class SensorCsvError(LineGuardError):
    """A sensor CSV that cannot be read as readings; the message names the file and what is wrong."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class SensorTable:
    """One CSV's readings in time order: S x C float32 (NaN where missing), optional times and 0/1 labels."""

    name: str
    channels: tuple[str, ...]
    values: np.ndarray
    timestamps_ms: np.ndarray | None = None  # S float64 Unix ms, strictly increasing
    labels: np.ndarray | None = None  # S int8
    reordered: bool = False
    duplicates: int = 0

    @property
    def sample_rate_hz(self) -> float | None:
        """Samples per second from the median step between timestamps; None without timestamps."""
        if self.timestamps_ms is None or len(self.timestamps_ms) < 2:
            return None
        return float(1000 / np.median(np.diff(self.timestamps_ms)))


def read_sensor_table(
    path: Path,
    *,
    time_column: str | None = None,
    label_column: str | None = None,
    channels: tuple[str, ...] | None = None,
) -> SensorTable:
    """Read one sensor CSV by the rules of this module; SensorCsvError (one line) when it cannot."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SensorCsvError(path, f"unreadable ({type(exc).__name__})") from exc
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2:
        raise SensorCsvError(path, "needs a header line and at least one row of readings")
    delimiter = max(";,\t", key=lines[0].count)
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [name.strip() for name in rows[0]]
    columns = {name: index for index, name in enumerate(header)}
    time_name = _pick(path, columns, time_column, TIME_NAMES, "time column")
    label_name = _pick(path, columns, label_column, LABEL_NAMES, "label column")
    reserved = {time_name, label_name, *NOT_READINGS}
    names = channels or tuple(name for name in header if name not in reserved)
    _check_channels(path, columns, names, reserved)
    body = rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise SensorCsvError(path, f"line {number} has {len(row)} fields, the header {len(header)}")
    values = np.array([[_reading(path, row, columns[n], n, i) for n in names] for i, row in enumerate(body, 2)])
    labels = None
    if label_name is not None:
        labels = np.array([_label(path, row[columns[label_name]], i) for i, row in enumerate(body, 2)], np.int8)
    stamps = None
    if time_name is not None:
        stamps = np.array([_ms(path, row[columns[time_name]], i) for i, row in enumerate(body, 2)])
    readings = values.astype(np.float32).reshape(len(body), len(names))
    return _in_time_order(SensorTable(path.stem, tuple(names), readings, stamps, labels))


def _pick(path: Path, columns: dict[str, int], named: str | None, known: tuple[str, ...], what: str) -> str | None:
    if named is not None:
        if named not in columns:
            raise SensorCsvError(path, f"no {what} {named!r} in the header {list(columns)}")
        return named
    by_lower = {name.lower(): name for name in columns}
    return next((by_lower[name] for name in known if name in by_lower), None)


def _check_channels(path: Path, columns: dict[str, int], names: tuple[str, ...], reserved: set[str | None]) -> None:
    if not names:
        raise SensorCsvError(path, f"no sensor columns in the header {list(columns)}")
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise SensorCsvError(path, f"no column {unknown} in the header {list(columns)}")
    taken = [name for name in names if name in reserved]
    if taken:
        raise SensorCsvError(path, f"{taken} is the time or label column, not a reading")


def _reading(path: Path, row: list[str], index: int, name: str, line: int) -> float:
    text = row[index].strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise SensorCsvError(
            path, f"line {line}, column {name!r}: {text[:40]!r} is not a number (pick the sensor columns with channels)"
        ) from None
    return value if math.isfinite(value) else math.nan


def _label(path: Path, text: str, line: int) -> int:
    text = text.strip().lower()
    if text in MISSING or text in ("false", "normal"):
        return 0
    if text in ("true", "anomaly", "attack"):
        return 1
    try:
        return int(float(text) > 0)
    except ValueError:
        raise SensorCsvError(path, f"line {line}: label {text[:40]!r} is not 0/1") from None


def _ms(path: Path, text: str, line: int) -> float:
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number if abs(number) > MS_ABOVE else number * 1000
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise SensorCsvError(path, f"line {line}: time {text[:40]!r} is neither ISO 8601 nor Unix time") from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp() * 1000


def _in_time_order(table: SensorTable) -> SensorTable:
    """Stable sort by time, then drop rows whose timestamp repeats: every kept timestamp is after the one before."""
    stamps = table.timestamps_ms
    if stamps is None or len(stamps) < 2:
        return table
    reordered = bool(np.any(np.diff(stamps) < 0))
    order = np.argsort(stamps, kind="stable")
    stamps = stamps[order]
    keep = np.concatenate([[True], np.diff(stamps) > 0])
    pick = order[keep]
    return SensorTable(
        table.name,
        table.channels,
        table.values[pick],
        stamps[keep],
        None if table.labels is None else table.labels[pick],
        reordered,
        int((~keep).sum()),
    )


def segments(table: SensorTable, gap_periods: float | None = 3.0) -> list[slice]:
    """Stretches of rows with every reading present and no time gap: where windows may be cut.

    A gap is a step of more than `gap_periods` times the median step, the consumer's rule (sensor_gap_periods);
    None keeps rows consecutive whatever their timestamps.
    """
    breaks = ~np.all(np.isfinite(table.values), axis=1)  # a row with a missing reading is not in any stretch
    cuts = np.zeros(len(breaks), dtype=bool)  # a stretch starts at this row (after a gap)
    if gap_periods is not None and table.timestamps_ms is not None and len(table.timestamps_ms) > 2:
        steps = np.diff(table.timestamps_ms)
        cuts[1:] = steps > gap_periods * np.median(steps)
    found, start = [], None
    for row in range(len(breaks) + 1):
        end = row == len(breaks) or breaks[row] or cuts[row]
        if end and start is not None:
            found.append(slice(start, row))
            start = None
        if row < len(breaks) and not breaks[row] and start is None:
            start = row
    return found
