"""pipeline.sensors.csvfile: sensor CSVs in the layouts real loggers write, and the stated rules for what is unclean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.sensors.csvfile import SensorCsvError, read_sensor_table, segments

T0 = 1_764_403_200  # 2025-11-29T08:00:00Z in Unix seconds


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def test_comma_file_with_unix_seconds_and_a_label_column(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "pump.csv",
        f"timestamp,flow,current,label\n{T0},1.5,0.2,0\n{T0 + 1},1.6,0.3,0\n{T0 + 2},1.4,0.25,1\n",
    )
    table = read_sensor_table(csv)
    assert table.channels == ("flow", "current")  # the time and label columns are not readings
    assert table.values.dtype == np.float32 and table.values.shape == (3, 2)
    np.testing.assert_array_equal(table.labels, [0, 0, 1])
    np.testing.assert_array_equal(table.timestamps_ms, [T0 * 1000.0, (T0 + 1) * 1000.0, (T0 + 2) * 1000.0])
    assert table.sample_rate_hz == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("stamp", "expected_ms"),
    [
        (str(T0 * 1000 + 250), T0 * 1000.0 + 250),  # Unix milliseconds
        ("2025-11-29T08:00:00+01:00", (T0 - 3600) * 1000.0),  # ISO with an offset
        ("2025-11-29 08:00:00", T0 * 1000.0),  # naive ISO: UTC
    ],
)
def test_time_formats(tmp_path: Path, stamp: str, expected_ms: float) -> None:
    table = read_sensor_table(write(tmp_path / "a.csv", f"Time\tvibration\n{stamp}\t0.5\n"))
    assert table.channels == ("vibration",)
    assert table.timestamps_ms is not None and table.timestamps_ms[0] == pytest.approx(expected_ms)


def test_rows_are_put_in_time_order_and_repeated_timestamps_dropped(tmp_path: Path) -> None:
    csv = write(tmp_path / "a.csv", f"ts;x;anomaly\n{T0 + 2};3;1\n{T0};1;0\n{T0 + 1};2;0\n{T0 + 1};9;1\n")
    table = read_sensor_table(csv)
    np.testing.assert_array_equal(table.values[:, 0], [1, 2, 3])  # the first row at T0 + 1 is kept
    np.testing.assert_array_equal(table.labels, [0, 0, 1])
    assert table.reordered and table.duplicates == 1


def test_missing_readings_are_nan_and_split_the_stretches(tmp_path: Path) -> None:
    rows = [f"{T0 + i},{'' if i == 3 else 'NaN' if i == 4 else 'inf' if i == 5 else i},1" for i in range(10)]
    table = read_sensor_table(write(tmp_path / "a.csv", "datetime,a,b\n" + "\n".join(rows)))
    assert np.isnan(table.values[3:6, 0]).all() and np.isfinite(np.delete(table.values, [3, 4, 5], 0)).all()
    assert [(s.start, s.stop) for s in segments(table)] == [(0, 3), (6, 10)]


def test_a_time_gap_splits_like_the_consumer(tmp_path: Path) -> None:
    stamps = [0, 1, 2, 3, 10, 11, 12, 14]  # 7 s is a gap at 3 periods; 2 s is not
    table = read_sensor_table(write(tmp_path / "a.csv", "ts,a\n" + "\n".join(f"{T0 + s},1" for s in stamps)))
    assert [(s.start, s.stop) for s in segments(table, gap_periods=3.0)] == [(0, 4), (4, 8)]
    assert [(s.start, s.stop) for s in segments(table, gap_periods=10.0)] == [(0, 8)]
    assert [(s.start, s.stop) for s in segments(table, gap_periods=None)] == [(0, 8)]  # rows, whatever their times


def test_a_file_without_time_column_has_no_timestamps(tmp_path: Path) -> None:
    table = read_sensor_table(write(tmp_path / "a.csv", "a,b\n1,2\n3,4\n"))
    assert table.timestamps_ms is None and table.sample_rate_hz is None and table.channels == ("a", "b")


def test_named_columns_override_the_defaults(tmp_path: Path) -> None:
    csv = write(tmp_path / "a.csv", "when,fault,a,b,note_id\n2025-11-29 08:00:00,1,1.0,2.0,7\n")
    table = read_sensor_table(csv, time_column="when", label_column="fault", channels=("b", "a"))
    assert table.channels == ("b", "a") and table.values.tolist() == [[2.0, 1.0]]
    np.testing.assert_array_equal(table.labels, [1])


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("ts,a,status\n1764403200,1,RUNNING\n", {}, "line 2, column 'status': 'RUNNING' is not a number"),
        ("a\n", {}, "needs a header line and at least one row"),
        ("a,b\n1\n", {}, "line 2 has 1 fields, the header 2"),
        ("ts,a\nyesterday,1\n", {}, "time 'yesterday' is neither ISO 8601 nor Unix time"),
        ("a,b\n1,2\n", {"time_column": "when"}, "no time column 'when'"),
        ("a,b\n1,2\n", {"channels": ("c",)}, "no column ['c']"),
        ("ts,a\n1,2\n", {"channels": ("ts",)}, "is the time or label column"),
        ("a,label\n1,maybe\n", {}, "label 'maybe' is not 0/1"),
    ],
)
def test_unreadable_files_are_one_clear_error(tmp_path: Path, text: str, kwargs: dict, message: str) -> None:
    with pytest.raises(SensorCsvError, match=None) as caught:
        read_sensor_table(write(tmp_path / "bad.csv", text), **kwargs)
    assert message in str(caught.value) and "bad.csv" in str(caught.value)
    assert "\n" not in str(caught.value)
