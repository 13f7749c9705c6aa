"""`lineguard train-sensors` and `evaluate` on tiny synthetic recordings; calibration uses normal data only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.inference import read_metadata
from pipeline.sensors.model import SensorModel
from tests.training.sensor_data_factory import CHANNELS, labelled_recording, synthetic_readings, write_sensor_csv
from training.evaluation.calibrate import budget_threshold, normal_threshold
from training.sensors.data import CsvColumns, read_sensor_csv, sliding_windows

runner = CliRunner()
app = build_app()
FAST = ["--window", "16", "--epochs", "4", "--batch-size", "16", "--version", "3"]


@pytest.fixture(scope="module")
def normal_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sensors")
    # labels present but all normal: the trainer must read around them
    return write_sensor_csv(folder / "normal.csv", synthetic_readings(300, seed=1), np.zeros(300, dtype=int))


@pytest.fixture(scope="module")
def trained(normal_csv: Path) -> Path:
    out = normal_csv.parent / "pump.onnx"
    result = runner.invoke(app, ["train-sensors", str(normal_csv), "--out", str(out), "--name", "pump", *FAST])
    assert result.exit_code == 0, result.output
    return out


def test_train_sensors_writes_the_sensor_contract(trained: Path, normal_csv: Path) -> None:
    metadata = read_metadata(trained)
    assert (metadata.kind, metadata.model_name, metadata.model_version) == ("sensor", "pump", "3")
    assert metadata.architecture == "sensor-cae" and metadata.input_size == 16 and metadata.input_channels == 3
    spec = metadata.sensor
    assert spec is not None and spec.channels == CHANNELS and spec.window_length == 16 and spec.window_stride == 1
    assert spec.sample_rate_hz == pytest.approx(1.0)
    fit_part = read_sensor_csv(normal_csv).values[:240]  # the first 80 %: the held-out tail is not in the stats
    assert np.allclose(spec.channel_mean, fit_part.mean(axis=0), rtol=1e-4, atol=1e-4)
    assert np.allclose(spec.channel_std, fit_part.std(axis=0), rtol=1e-3)
    assert metadata.training_config["fit"]["epochs"] == 4
    assert len(metadata.train_data_digest) == 64


def test_threshold_is_calibrated_on_held_out_normal_windows(trained: Path, normal_csv: Path) -> None:
    model = SensorModel(trained, prefer_gpu=False)
    held_out = read_sensor_csv(normal_csv).values[240:]
    scores = model.score(sliding_windows(held_out, 16, 1)).score
    assert model.metadata.image_score_stats.n == len(scores) == 60 - 16 + 1
    budget = budget_threshold(scores, 0.01)
    assert model.metadata.image_threshold == pytest.approx(budget.threshold, rel=1e-5)
    false_alarm = model.metadata.false_alarm
    assert false_alarm is not None and false_alarm.rate == 0.01 and false_alarm.n_normals == len(scores)
    assert false_alarm.warning is not None  # 45 held-out windows are too few for a trustworthy tail


def test_quantile_sets_the_threshold_instead_of_the_budget(normal_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "quantile.onnx"
    args = ["train-sensors", str(normal_csv), "--out", str(out), "--quantile", "0.99", *FAST]
    assert runner.invoke(app, args).exit_code == 0
    model = SensorModel(out, prefer_gpu=False)
    scores = model.score(sliding_windows(read_sensor_csv(normal_csv).values[240:], 16, 1)).score
    assert model.metadata.image_threshold == pytest.approx(normal_threshold(scores, 0.99, 0.0), rel=1e-5)
    assert model.metadata.false_alarm is None


def test_labels_never_reach_training_or_calibration(trained: Path, normal_csv: Path, tmp_path: Path) -> None:
    values = read_sensor_csv(normal_csv).values
    flipped = write_sensor_csv(tmp_path / "normal.csv", values, np.random.default_rng(0).integers(0, 2, len(values)))
    out = tmp_path / "flipped.onnx"
    result = runner.invoke(app, ["train-sensors", str(flipped), "--out", str(out), "--name", "pump", *FAST])
    assert result.exit_code == 0, result.output
    assert read_metadata(out).image_threshold == pytest.approx(read_metadata(trained).image_threshold, rel=1e-5)


def test_evaluate_reports_f1_far_and_mar_for_a_sensor_model(trained: Path, tmp_path: Path) -> None:
    recording = labelled_recording(tmp_path / "faulty.csv")
    result = runner.invoke(app, ["evaluate", str(trained), str(recording), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["point_tp"] + metrics["point_fn"] == 80
    assert metrics["point_tp"] + metrics["point_fp"] + metrics["point_tn"] + metrics["point_fn"] == 360
    assert metrics["window_auroc"] > 0.9  # a step of several std in one channel is plain to see
    assert metrics["point_mar"] < 0.5
    for key in ("point_f1", "point_far", "point_mar", "window_f1", "window_far", "window_mar"):
        assert 0 <= metrics[key] <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "18"], "config field 'window' = 18: must be a multiple of 4"),
        (["--model", "cae"], "unknown model 'cae'; valid names: sensor-cae, sensor-dae, sensor-vae"),
        (["--window", "400"], "too short for windows of 400 samples"),
        (["--level-free", "Nope"], "level_free names ['Nope'], not sensor columns"),
    ],
)
def test_cli_errors_are_one_readable_line(args: list[str], message: str, normal_csv: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from pipeline.cli.app import main; main()"]
    done = subprocess.run(
        [*command, "train-sensors", str(normal_csv), "--out", str(tmp_path / "m.onnx"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_unreadable_csv_is_one_readable_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime;a;b\n2026-11-29 08:00:00;1.0;oops\n")
    command = [sys.executable, "-c", "from pipeline.cli.app import main; main()"]
    done = subprocess.run(
        [*command, "train-sensors", str(bad), "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1 and "bad.csv: line 2" in errors[0], done.stderr


def test_scale_data_floors_the_channel_std(normal_csv: Path, tmp_path: Path) -> None:
    """A long normal run whose voltage wanders more than in training widens the voltage's std, not the others'."""
    wide = synthetic_readings(300, seed=2)
    wide[:, 2] += np.linspace(-20, 20, 300)  # a slow drift the short training recording never shows
    reference = write_sensor_csv(tmp_path / "long-normal.csv", wide)
    out = tmp_path / "scaled.onnx"
    args = ["train-sensors", str(normal_csv), "--out", str(out), "--scale-data", str(reference), *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    plain, scaled = read_metadata(normal_csv.parent / "pump.onnx").sensor, read_metadata(out).sensor
    assert plain is not None and scaled is not None
    assert scaled.channel_std[2] == pytest.approx(float(wide[:, 2].std()), rel=1e-3)
    assert scaled.channel_std[2] > plain.channel_std[2]
    assert scaled.channel_std[:2] == plain.channel_std[:2]


def test_level_free_channels_are_scored_on_shape_not_level(normal_csv: Path, tmp_path: Path) -> None:
    """A level-free channel warmed far past anything in training scores as its shape says; the others still alarm."""
    out = tmp_path / "level-free.onnx"
    args = ["train-sensors", str(normal_csv), "--out", str(out), "--level-free", CHANNELS[0], *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model = SensorModel(out, prefer_gpu=False)
    assert model.spec.level_free_channels == (CHANNELS[0],)
    windows = sliding_windows(read_sensor_csv(normal_csv).values, 16, 16)
    std = np.array(model.spec.channel_std, dtype=np.float32)
    baseline = model.score(windows)
    for channel, should_alarm in ((0, False), (1, True)):
        shifted = windows.copy()
        shifted[:, channel, :] += 50 * std[channel]  # a level 50 std away, the same shape
        scored = model.score(shifted)
        if should_alarm:
            assert np.all(scored.score > 10 * baseline.score)
        else:
            assert np.allclose(scored.score, baseline.score, atol=1e-3)
            # the denoised window keeps the channel's real level
            assert np.allclose(scored.reconstruction[:, 0], baseline.reconstruction[:, 0] + 50 * std[0], atol=1e-2)


def logger_csv(path: Path, values: np.ndarray, labels: np.ndarray, gap_after: int) -> Path:
    """A logger's export: commas, Unix-second `timestamp`, a `label` column, an extra status column first, the
    channels in another order, blank readings (a dropped sample) and a pause in logging."""
    lines = ["timestamp,status,Voltage,Current,Pressure,label"]
    for index, (pressure, current, voltage) in enumerate(values):
        second = 1_764_403_200 + index + (600 if index > gap_after else 0)
        cells = [f"{voltage:.4f}", "" if index % 97 == 50 else f"{current:.4f}", f"{pressure:.4f}"]
        lines.append(",".join([str(second), "1", *cells, str(int(labels[index]))]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_logger_style_csv_trains_and_evaluates_with_gaps_and_blanks(trained: Path, tmp_path: Path) -> None:
    """Blank readings and the pause split the recording: no window holds them, in training or evaluation."""
    normal = logger_csv(tmp_path / "normal.csv", synthetic_readings(400, seed=3), np.zeros(400), gap_after=200)
    out = tmp_path / "logger.onnx"
    args = ["train-sensors", str(normal), "--out", str(out), "--channels", "Pressure,Current,Voltage", *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metadata = read_metadata(out)
    assert metadata.sensor is not None and metadata.sensor.channels == CHANNELS
    assert np.isfinite(metadata.image_threshold) and np.isfinite(metadata.sensor.channel_std).all()
    assert metadata.sensor.sample_rate_hz == pytest.approx(1.0)

    values = synthetic_readings(360, seed=7)
    labels = np.zeros(360, dtype=int)
    labels[240:320] = 1
    values[240:320, 0] = 1.5
    faulty = logger_csv(tmp_path / "faulty.csv", values, labels, gap_after=100)
    # the earlier model's channels are picked from the logger's columns by name
    result = runner.invoke(app, ["evaluate", str(trained), str(faulty), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    blanks = [i for i in range(360) if i % 97 == 50]  # rows 50, 147, 244 (in the fault) and 341
    assert metrics["unscored_rows"] == len(blanks)
    assert metrics["point_tp"] + metrics["point_fp"] + metrics["point_tn"] + metrics["point_fn"] == 360 - 4
    assert metrics["point_tp"] + metrics["point_fn"] == 80 - 1 and metrics["window_auroc"] > 0.9


def test_training_never_sees_a_window_across_a_gap(tmp_path: Path) -> None:
    """Two halves far apart in time at different levels: one window across the pause would teach the jump."""
    from training.sensors.choose import split_in_time
    from training.sensors.data import read_sensor_csv as read

    values = synthetic_readings(200, seed=4)
    values[120:] += 5.0
    series = read(logger_csv(tmp_path / "a.csv", values, np.zeros(200), gap_after=119))
    fit, held = split_in_time([series], 0.2, 16)
    # fitting: rows 0-159 cut at the blank rows 50 and 147 and at the pause after row 119; held out: rows 160-199
    assert [len(part) for part in fit] == [50, 69, 27, 12] and [len(part) for part in held] == [40]
    assert all(np.isfinite(part).all() for part in fit + held)


def test_a_channel_constant_in_training_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    values = synthetic_readings(300, seed=5)
    values[:, 1] = 1.0  # a setpoint that never moved while the normal data was logged
    normal = write_sensor_csv(tmp_path / "still.csv", values)
    with caplog.at_level("WARNING", logger="training.sensors.train"):
        result = runner.invoke(app, ["train-sensors", str(normal), "--out", str(tmp_path / "m.onnx"), *FAST])
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if "constant in training" in r.getMessage()]
    assert len(warned) == 1 and "Current" in warned[0] and "Pressure" not in warned[0]


def test_long_recordings_are_thinned_to_a_bounded_number_of_windows() -> None:
    """Overlapping windows of a long recording would not fit in memory: beyond the limit, evenly spaced ones
    (a multiple of the stride) are taken, from every stretch."""
    import torch

    from training.models import create_sensor_model
    from training.sensors.export import SensorScoringGraph
    from training.sensors.train import thinned_step, windows_of

    parts = [np.zeros((1000, 3), np.float32), np.zeros((500, 3), np.float32), np.zeros((10, 3), np.float32)]
    assert thinned_step(parts, 16, 1, limit=10_000) == 1  # 985 + 485 windows: all of them
    assert thinned_step(parts, 16, 2, limit=100) == 16  # 493 + 243 windows at stride 2: every 8th
    graph = SensorScoringGraph(
        create_sensor_model("sensor-cae", 3), np.zeros(3, np.float32), np.ones(3, np.float32), np.zeros(3, bool)
    )
    with torch.no_grad():
        windows = windows_of(parts, graph, 16, 2, limit=100)
    assert windows.shape == (len(range(0, 985, 16)) + len(range(0, 485, 16)), 3, 16)


def test_evaluate_report_writes_a_plot_per_recording_and_row_scores(trained: Path, tmp_path: Path) -> None:
    recording = labelled_recording(tmp_path / "faulty.csv")
    report = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", str(trained), str(recording), "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert (report / "faulty.png").stat().st_size > 1000
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["point_auroc"] > 0.8
    detail = metrics["recordings_detail"][0]
    assert detail["plot"] == "faulty.png" and detail["top_channels"][0]["channel"] in CHANNELS


def test_row_scores_are_the_mean_of_the_covering_windows() -> None:
    from training.sensors.evaluate import row_scores

    rows = row_scores(np.array([1.0, 3.0, 5.0]), 5, 3)
    np.testing.assert_allclose(rows, [1.0, 2.0, 3.0, 4.0, 5.0])


def test_training_takes_every_window_whatever_the_line_stride(
    normal_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "strided.onnx"
    with caplog.at_level("INFO", logger="training.sensors.train"):
        result = runner.invoke(app, ["train-sensors", str(normal_csv), "--out", str(out), "--stride", "8", *FAST])
    assert result.exit_code == 0, result.output
    assert read_metadata(out).sensor.window_stride == 8  # type: ignore[union-attr]
    assert "225 training and 45 held-out windows" in caplog.text  # 240 rows at stride 1, not 29 at stride 8


def test_new_models_judge_rows_by_their_mean_score(trained: Path) -> None:
    assert SensorModel(trained, prefer_gpu=False).spec.point_rule == "row-mean"


def test_a_model_written_before_the_point_rule_is_judged_by_the_notebook_rule(trained: Path, tmp_path: Path) -> None:
    import onnx

    from training.sensors.evaluate import evaluate_recording, point_verdicts, window_scores

    proto = onnx.load(str(trained))
    for prop in proto.metadata_props:
        if prop.key == "sensor":
            block = json.loads(prop.value)
            del block["point_rule"]  # as files written before the field carry it
            prop.value = json.dumps(block)
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    model = SensorModel(old, prefer_gpu=False)
    assert model.spec.point_rule == "all-windows"
    series = read_sensor_csv(labelled_recording(tmp_path / "faulty.csv"))
    threshold = model.metadata.image_threshold
    scores = window_scores(model, series.values)
    np.testing.assert_allclose(scores, window_scores(SensorModel(trained, prefer_gpu=False), series.values))
    judged = evaluate_recording(model, series, threshold).verdicts
    np.testing.assert_array_equal(judged, point_verdicts(scores, len(series.values), 16, threshold))
    new = evaluate_recording(SensorModel(trained, prefer_gpu=False), series, threshold).verdicts
    assert new.sum() > judged.sum()  # the row mean reaches the ends of the fault the notebook rule misses


def test_row_mean_flags_a_fault_shorter_than_the_window_where_the_notebook_rule_cannot() -> None:
    from training.sensors.evaluate import row_verdicts

    # a fault shorter than the window: the windows reaching past it are low, so the notebook rule never flags it
    scores = np.array([0.0, 0.0, 3.0, 3.0, 0.0, 0.0, 0.0])
    assert not row_verdicts(scores, 9, 3, 1.0, "all-windows").any()
    row_mean = row_verdicts(scores, 9, 3, 1.5, "row-mean")  # row scores 0 0 1 2 2 1 0 0 0
    np.testing.assert_array_equal(row_mean, [False, False, False, True, True, False, False, False, False])
    assert not row_verdicts(np.empty(0), 2, 3, 0.0, "row-mean").any()  # too short for a window: no verdict


def hourly_series(path: Path, days: int, seed: int, fault: slice | None = None) -> Path:
    """One channel logged hourly: a daily and a weekly rhythm, a slow trend and a normal level shift."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    value = 10 + 3 * np.sin(2 * np.pi * hours / 24) + np.sin(2 * np.pi * hours / 168) + hours / 200
    value += np.where(hours > len(hours) // 2, 4.0, 0.0) + 0.3 * rng.normal(size=len(hours))
    labels = np.zeros(len(hours), dtype=int)
    if fault is not None:
        value[fault] = value[fault].mean()  # the daily cycle stops: flat at its level
        labels[fault] = 1
    start = np.datetime64("2026-01-05T00:00")
    stamps = [str(start + np.timedelta64(int(h), "h")) for h in hours]
    lines = ["timestamp,load,label"] + [f"{t},{v:.4f},{y}" for t, v, y in zip(stamps, value, labels, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_univariate_seasonal_series_gets_its_window_from_the_period_and_calendar_inputs(tmp_path: Path) -> None:
    normal = hourly_series(tmp_path / "normal.csv", days=40, seed=1)
    out = tmp_path / "load.onnx"
    args = ["train-sensors", str(normal), "--out", str(out), "--calendar", "day", "--epochs", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metadata = read_metadata(out)
    spec = metadata.sensor
    assert spec is not None and spec.period_samples in (24, 168) and spec.window_length % 4 == 0
    assert spec.window_length >= spec.period_samples and spec.calendar == ("day",)
    assert metadata.input_channels == 3 and metadata.training_config["window_source"] == "period"
    assert spec.level_free_channels == ("load",)  # trend and level shift: its level drifts
    later = hourly_series(tmp_path / "later.csv", days=20, seed=2, fault=slice(200, 260))
    result = runner.invoke(app, ["evaluate", str(out), str(later), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["window_auroc"] > 0.7
    inspected = runner.invoke(app, ["inspect-model", str(out), "--json"])
    assert json.loads(inspected.output)["sensor"]["period_samples"] == spec.period_samples


def another_operating_point(path: Path) -> Path:
    """The rig at another set point: every channel at another level with half the spread, and a fault in rows
    240-320 (the pressure steps up and loses its rhythm)."""
    values = synthetic_readings(360, seed=7) * 0.5 + [1.0, 2.0, -20.0]
    labels = np.zeros(360, dtype=int)
    labels[240:320] = 1
    values[240:320, 0] = 1.75 + 0.01 * np.random.default_rng(7).standard_normal(80)
    return write_sensor_csv(path, values, labels)


def test_adapt_rows_scores_a_run_against_its_own_first_rows(trained: Path, normal_csv: Path, tmp_path: Path) -> None:
    from training.sensors.evaluate import evaluate_sensors
    from training.sensors.report import evaluate_with_report

    out = tmp_path / "adapted.onnx"
    result = runner.invoke(app, ["train-sensors", str(normal_csv), "--out", str(out), "--adapt-rows", "40", *FAST])
    assert result.exit_code == 0, result.output
    assert SensorModel(out, prefer_gpu=False).spec.adapt_rows == 40
    moved = another_operating_point(tmp_path / "moved.csv")
    adapted, plain = evaluate_sensors(out, moved), evaluate_sensors(trained, moved)
    assert adapted.unscored_rows == 40 and plain.unscored_rows == 0  # the baseline rows are not judged
    assert plain.point.far > 0.5  # every normal row is far from the training statistics
    assert adapted.window_auroc is not None and adapted.window_auroc > 0.95
    assert adapted.point.far < 0.25 and adapted.point.mar < 0.5  # its alarms reach a window either side of the fault
    evaluate_with_report(out, moved, CsvColumns(), tmp_path / "report")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["adapt_rows"] == 40
    assert (tmp_path / "report" / "moved.png").stat().st_size > 0
