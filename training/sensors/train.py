"""Fit a sensor autoencoder on normal recordings, calibrate its window threshold on held-out normal data, export.

The windows and their normalisation are made here; the fit itself is the sensor family's
(training.models.sensor.family, through the one loop training.fitting.fit_loop).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from pipeline.contract import SENSOR_NORMALIZATION, SENSOR_RESIZE_MODE, ModelMetadata, ScoreStats, SensorSpec
from pipeline.sensors.adapt import adapt_runs
from pipeline.sensors.model import SensorModel
from pipeline.sensors.timefeatures import calendar_channel_names, with_calendar
from training.errors import DatasetError
from training.evaluation.calibrate import budget_threshold, normal_threshold, score_stats
from training.export.metadata import update_metadata
from training.fitting import FitSummary
from training.models import create_sensor_model, sensor_model_entry
from training.sensors.choose import automatic_level_free, choose_window, split_in_time
from training.sensors.config import SensorTrainConfig
from training.sensors.data import (
    CsvColumns,
    SensorSeries,
    files_digest,
    read_sensor_data,
    sensor_files,
    sliding_windows,
)
from training.sensors.export import SensorScoringGraph, export_sensor_onnx

log = logging.getLogger(__name__)

NO_STATS = ScoreStats(n=0, mean=0.0, std=0.0)  # until calibration on the exported file
# Memory bounds for long recordings: windows overlap, so a million rows at stride 1 would be a million windows
# (8 channels x 60 samples: 1.9 GB). Beyond these counts, windows are taken evenly spaced (a multiple of the stride).
MAX_TRAIN_WINDOWS = 100_000
MAX_HELD_OUT_WINDOWS = 20_000
SCORE_CHUNK = 2048


def train_sensors(cfg: SensorTrainConfig) -> Path:
    """Train, calibrate and export one sensor model; returns the path of the written .onnx file."""
    torch.manual_seed(cfg.seed)
    series = read_sensor_data(cfg.data, cfg.columns)
    channels = series[0].channels
    if cfg.adapt_rows:
        series = [adapted_series(one, cfg.adapt_rows) for one in series]
    every_part = [part for one in series for part in one.parts()]
    shape = choose_window(every_part, cfg.window, cfg.stride, cfg.default_window, cfg.time_multiple)
    level_free = automatic_level_free(every_part, channels, shape) if cfg.level_free is None else cfg.level_free
    fit_parts, held_out = split_in_time(
        [with_calendar_of(one, cfg.calendar) for one in series], cfg.val_fraction, shape.window
    )
    mean, std = channel_stats(fit_parts, len(channels))
    warn_still_channels(fit_parts, channels, cfg.scale_data is not None)
    if cfg.scale_data is not None:
        std = np.maximum(std, reference_std(cfg.scale_data, channels, cfg.columns))
    calendar_channels = len(calendar_channel_names(cfg.calendar))
    model = create_sensor_model(cfg.model, len(channels) + calendar_channels, **cfg.model_overrides())
    flags = level_free_flags(cfg.data, level_free, channels)
    graph = SensorScoringGraph(model, mean, std, flags, cfg.level_statistic, calendar_channels)
    # every window (stride 1), not the line's stride: each start offset is another view of the same rows, and a model
    # of a seasonal series sees every phase of it (at period / 24 a 1,200-row series gave 110 windows to learn from)
    train_windows = windows_of(fit_parts, graph, shape.window, 1, MAX_TRAIN_WINDOWS)
    val_windows = windows_of(held_out, graph, shape.window, 1, MAX_HELD_OUT_WINDOWS)
    if len(train_windows) < 2 or len(val_windows) == 0:
        raise DatasetError(
            str(cfg.data),
            f"too short for windows of {shape.window} samples: {cfg.val_fraction:.0%} of each recording is held "
            f"out (in blocks across it, or its tail when short) and the held-out part of at least one needs "
            f"{shape.window} samples",
        )
    log.info(
        "%d training and %d held-out windows of %d x %d", len(train_windows), len(val_windows), *val_windows.shape[1:]
    )

    summary = sensor_model_entry(cfg.model).family.fit(model, train_windows, val_windows, cfg)
    graph = graph.eval()
    spec = SensorSpec(
        channels=channels,
        window_length=shape.window,
        window_stride=shape.stride,
        channel_mean=tuple(mean.tolist()),
        channel_std=tuple(std.tolist()),
        sample_rate_hz=series[0].sample_rate_hz,
        level_free_channels=level_free,
        level_statistic=cfg.level_statistic,
        calendar=cfg.calendar,
        period_samples=shape.period,
        point_rule=cfg.point_rule,
        adapt_rows=cfg.adapt_rows,
    )
    uncalibrated = ModelMetadata(
        model_name=cfg.model_name or cfg.data.resolve().stem,
        model_version=cfg.model_version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        architecture=cfg.model,
        kind="sensor",
        input_size=spec.window_length,
        input_channels=spec.input_channels,
        resize_mode=SENSOR_RESIZE_MODE,
        image_threshold=0.0,
        pixel_threshold=0.0,
        image_score_stats=NO_STATS,
        pixel_score_stats=NO_STATS,
        train_data_digest=files_digest(sensor_files(cfg.data)),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        normalization=SENSOR_NORMALIZATION,
        training_config={**cfg.to_json_dict(), "window_source": shape.source, "fit": summary.__dict__},
        sensor=spec,
    )
    parity = export_sensor_onnx(graph, uncalibrated, cfg.out)
    # Calibrate on the exported file's outputs (onnxruntime), exactly what the line will compare.
    metadata = calibrate_sensor_model(cfg, uncalibrated, held_out)
    update_metadata(cfg.out, metadata)
    if cfg.show_progress:
        print_summary(cfg, metadata, summary, parity, len(train_windows), len(val_windows))
    return cfg.out


def adapted_series(series: SensorSeries, rows: int) -> SensorSeries:
    """The recording with each stretch (a run) re-expressed against its first `rows` rows (pipeline.sensors.adapt), as
    evaluation sees it; a stretch shorter than that never gets a baseline and is left out."""
    values, kept = adapt_runs(series.values, series.stretches, rows, len(series.channels))
    if len(kept) < len(series.stretches):
        log.info(
            "%s: %d stretch(es) shorter than --adapt-rows %d left out",
            series.name,
            len(series.stretches) - len(kept),
            rows,
        )
    return replace(series, values=values, stretches=kept)


def with_calendar_of(series: SensorSeries, calendar: tuple[str, ...]) -> SensorSeries:
    """The recording with the calendar channels appended to its readings, as the runtime appends them."""
    if not calendar:
        return series
    if series.timestamps_ms is None:
        raise DatasetError(series.name, f"calendar inputs ({', '.join(calendar)}) need a time column")
    values = with_calendar(series.values, series.timestamps_ms, calendar)
    return replace(series, values=values)


def channel_stats(parts: list[np.ndarray], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the normal training readings (the first `channels` columns: not the calendar).

    A channel that barely moves in training (a flow meter stuck at 32.0) would get a std near zero and turn
    any later wobble into a huge error; the floor (1e-3 of the channel's magnitude) bounds that.
    """
    values = np.concatenate(parts)[:, :channels].astype(np.float64)
    mean, std = values.mean(axis=0), values.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, 1e-3 * np.abs(mean) + 1e-6).astype(np.float32)


def warn_still_channels(parts: list[np.ndarray], channels: tuple[str, ...], scaled: bool) -> None:
    """Name the channels that never move in training: their std is floored, and any later change of theirs (a
    setpoint, a status flag) scores many std. Often right, but worth knowing before the line sees it."""
    values = np.concatenate(parts)[:, : len(channels)].astype(np.float64)
    still = [name for name, std in zip(channels, values.std(axis=0), strict=True) if std == 0]
    if still:
        hint = "" if scaled else "; --scale-data gives them a std from a longer normal run"
        log.warning(
            "constant in training: %s; any change of theirs will score high (drop them with --channels%s)",
            ", ".join(still),
            hint,
        )


def reference_std(path: Path, channels: tuple[str, ...], columns: CsvColumns) -> np.ndarray:
    """Per-channel std of other normal recordings (their columns picked by the training data's channel names), a
    floor for the training std.

    A short training recording sees slow channels (motor and fluid temperatures) nearly still, so their std
    is tiny and the ordinary warm-up drift of a later hour reads as many std: a false alarm. A long normal
    run shows how far they wander.
    """
    reference = read_sensor_data(path, CsvColumns(columns.time_column, columns.label_column, channels))
    values = np.concatenate([one.values for one in reference]).astype(np.float64)
    return np.nanstd(values, axis=0).astype(np.float32)


def level_free_flags(data: Path, level_free: tuple[str, ...], channels: tuple[str, ...]) -> np.ndarray:
    """One flag per channel: True for the channels `level_free` names; an unknown name is an error."""
    unknown = sorted(set(level_free) - set(channels))
    if unknown:
        raise DatasetError(str(data), f"level_free names {unknown}, not sensor columns {list(channels)}")
    return np.array([name in level_free for name in channels])


def thinned_step(parts: list[np.ndarray], length: int, stride: int, limit: int) -> int:
    """The stride, or a multiple of it that keeps the number of windows in `parts` at or under `limit`."""
    count = sum(max(0, (len(part) - length) // stride + 1) for part in parts)
    return stride * max(1, math.ceil(count / limit))


@torch.no_grad()
def windows_of(parts: list[np.ndarray], graph: SensorScoringGraph, length: int, stride: int, limit: int) -> np.ndarray:
    """The model's input windows N x C x T from every part long enough to hold one, normalised by the graph; at
    most about `limit` of them (evenly spaced) for long recordings.

    The scoring graph's own normalisation, so training sees exactly what the exported file feeds the model.
    """
    step = thinned_step(parts, length, stride, limit)
    if step != stride:
        log.info("long recording: every %d-th window (stride %d) to stay under %d windows", step, stride, limit)
    windows = [sliding_windows(part, length, step) for part in parts]
    inputs = graph.channels + graph.calendar_channels
    raw = np.concatenate(windows) if windows else np.empty((0, inputs, length), dtype=np.float32)
    return graph.normalise(torch.from_numpy(raw.astype(np.float32)))[0].numpy()


def calibrate_sensor_model(
    cfg: SensorTrainConfig, metadata: ModelMetadata, held_out: list[np.ndarray]
) -> ModelMetadata:
    """Window threshold from the held-out normal windows' scores: the false-alarm budget's (a tail model, with its
    warning when there are too few windows), or their quantile plus a margin; sample threshold from their error
    maps' quantile."""
    model = SensorModel(cfg.out, prefer_gpu=False)
    length = model.spec.window_length
    step = thinned_step(held_out, length, 1, MAX_HELD_OUT_WINDOWS)
    windows = np.concatenate([sliding_windows(part, length, step) for part in held_out])
    outputs = [model.score(windows[i : i + SCORE_CHUNK]) for i in range(0, len(windows), SCORE_CHUNK)]
    scores = np.concatenate([out.score for out in outputs])
    errors = np.concatenate([out.anomaly_map.ravel() for out in outputs])
    sample_threshold = normal_threshold(errors, cfg.calibration_quantile, cfg.sensitivity)
    if cfg.false_alarm_rate is None:
        window_threshold, false_alarm = normal_threshold(scores, cfg.calibration_quantile, cfg.sensitivity), None
    else:
        budget = budget_threshold(scores, cfg.false_alarm_rate, seed=cfg.seed)
        window_threshold, false_alarm = budget.threshold, budget.spec
    calibrated = metadata.with_thresholds(window_threshold, sample_threshold, false_alarm)
    stats = {"image_score_stats": score_stats(scores), "pixel_score_stats": score_stats(errors)}
    return replace(calibrated, **stats)


def print_summary(
    cfg: SensorTrainConfig, metadata: ModelMetadata, fit: FitSummary, parity: float, n_train: int, n_val: int
) -> None:
    spec = metadata.sensor
    assert spec is not None
    table = Table(title=f"{metadata.model_name} v{metadata.model_version} ({cfg.model})", show_header=False)
    rows = {
        "channels": ", ".join(spec.channels + spec.calendar),
        "window / stride": f"{spec.window_length} / {spec.window_stride}"
        + (f" (period {spec.period_samples})" if spec.period_samples else ""),
        "level-free": ", ".join(spec.level_free_channels) or "none",
        "windows (train / held out)": f"{n_train} / {n_val}",
        "epochs (best)": f"{fit.epochs} ({fit.best_epoch}, {fit.stopped_by})",
        "window threshold": f"{metadata.image_threshold:.4f}"
        + (f" (false-alarm budget {cfg.false_alarm_rate:g})" if cfg.false_alarm_rate is not None else ""),
        "point rule": spec.point_rule,
        "sample threshold": f"{metadata.pixel_threshold:.4f}",
        "onnx parity (max abs diff)": f"{parity:.1e}",
        "minutes": f"{fit.minutes:.2f}",
        "written": str(cfg.out),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    Console().print(table)
