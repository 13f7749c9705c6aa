"""Sensor commands of the `lineguard` CLI: `train-sensors`, and the sensor half of `evaluate`.

Like training.cli, this module imports no torch at the top: each command checks the training extra first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from training.extra import require_training_stack

if TYPE_CHECKING:
    from training.sensors.data import CsvColumns

TimeColumn = Annotated[
    str | None, typer.Option(help="CSV time column (default: datetime, timestamp, time, date or ts; ISO or Unix)")
]
LabelColumn = Annotated[str | None, typer.Option(help="CSV label column (default: anomaly, label or is_anomaly)")]
Channels = Annotated[str, typer.Option(help="comma-separated sensor columns (default: every other column)")]
GapPeriods = Annotated[
    float,
    typer.Option(help="a time step over this many median steps splits the recording, as on the line (0: never)"),
]


def csv_columns(time_column: str | None, label_column: str | None, channels: str, gap_periods: float) -> CsvColumns:
    """The CSV options as training.sensors.data.CsvColumns (imported here: it needs numpy)."""
    from training.sensors.data import CsvColumns

    picked = tuple(name.strip() for name in channels.split(",") if name.strip()) or None
    if gap_periods and gap_periods <= 1:
        raise typer.BadParameter(f"must be 0 or above 1, got {gap_periods}", param_hint="--gap-periods")
    return CsvColumns(time_column, label_column, picked, gap_periods or None)


def level_free_option(text: str) -> tuple[str, ...] | None:
    """--level-free: None for 'auto', () for 'none', else the names."""
    if text.strip().lower() == "auto":
        return None
    if text.strip().lower() == "none":
        return ()
    return tuple(name.strip() for name in text.split(",") if name.strip())


def train_sensors_command(
    data: Annotated[
        Path, typer.Argument(help="a CSV of normal readings, or a folder of them (';', ',' or tab; see --time-column)")
    ],
    out: Annotated[Path, typer.Option(help="where to write the .onnx model")],
    model: Annotated[
        str, typer.Option(help="sensor-cae, sensor-dae (denoising) or sensor-vae (variational)")
    ] = "sensor-cae",
    scale_data: Annotated[
        Path | None,
        typer.Option(help="a long normal recording (CSV or folder) whose per-channel std floors the normalisation's"),
    ] = None,
    time_column: TimeColumn = None,
    label_column: LabelColumn = None,
    channels: Channels = "",
    gap_periods: GapPeriods = 3.0,
    level_free: Annotated[
        str,
        typer.Option(
            help="channels scored on shape, not level: 'auto' (those whose level drifts in the training data), "
            "'none', or comma-separated names"
        ),
    ] = "auto",
    calendar: Annotated[
        str, typer.Option(help="time inputs from the timestamps: 'day', 'week' or 'day,week' (default none)")
    ] = "",
    adapt_rows: Annotated[
        int,
        typer.Option(
            help="re-express each run (recording, or stretch after a gap) against the level and scale of its first "
            "N rows, taken as normal and not judged: a line that changes operating point (default 0: off)"
        ),
    ] = 0,
    window: Annotated[
        int | None, typer.Option(help="window length in samples (default: from the data's dominant period, else 60)")
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(help="step between windows, in training and on the line (default: period / 24, else 1)"),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs (default: the model's, 100)")] = None,
    max_minutes: Annotated[float, typer.Option(help="time budget for training")] = 5.0,
    batch_size: Annotated[int | None, typer.Option(help="default: the model's, 32")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam learning rate (default: the model's)")] = None,
    noise_std: Annotated[float | None, typer.Option(help="training input noise in std units (sensor-dae: 0.2)")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="share of each recording held out for calibration, in blocks across it")
    ] = 0.2,
    false_alarm_rate: Annotated[
        float, typer.Option(help="false alarms allowed per normal window (a tail model of held-out normal scores)")
    ] = 0.01,
    quantile: Annotated[
        float | None,
        typer.Option(help="instead of --false-alarm-rate: this quantile of held-out normal window scores"),
    ] = None,
    sensitivity: Annotated[float, typer.Option(help="with --quantile: a margin in std of held-out scores")] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    name: Annotated[str, typer.Option(help="model name (default: data file or folder name)")] = "",
    version: Annotated[str, typer.Option(help="model version (default: UTC timestamp)")] = "",
) -> None:
    """Train on normal sensor readings, calibrate the window threshold on held-out normals, export one ONNX file.

    Label columns (`anomaly`, `label`, `is_anomaly`, `changepoint`) are ignored: training and calibration use
    readings only. Rows with a missing reading and time gaps split a recording: no window spans them.
    """
    require_training_stack()
    from training.sensors.config import SensorTrainConfig
    from training.sensors.train import train_sensors

    cfg = SensorTrainConfig(
        data=data,
        out=out,
        model=model,
        scale_data=scale_data,
        columns=csv_columns(time_column, label_column, channels, gap_periods),
        level_free=level_free_option(level_free),
        calendar=tuple(name.strip() for name in calendar.split(",") if name.strip()),
        adapt_rows=adapt_rows,
        window=window,
        stride=stride,
        epochs=epochs,
        max_minutes=max_minutes,
        batch_size=batch_size,
        learning_rate=learning_rate,
        noise_std=noise_std,
        val_fraction=val_fraction,
        false_alarm_rate=None if quantile is not None else false_alarm_rate,
        calibration_quantile=0.99 if quantile is None else quantile,
        sensitivity=sensitivity,
        seed=seed,
        model_name=name,
        model_version=version,
    )
    train_sensors(cfg)


def evaluate_sensor_model(
    model: Path, data: Path, as_json: bool, columns: CsvColumns, report: Path | None = None
) -> None:
    """Print per-point and per-window F1, FAR and MAR of a sensor model on labelled recordings; with `report`, a
    plot per recording and metrics.json in that folder."""
    from training.sensors.evaluate import evaluate_sensors
    from training.sensors.report import evaluate_with_report

    result = (
        evaluate_sensors(model, data, columns) if report is None else evaluate_with_report(model, data, columns, report)
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    table = Table(title=f"{result.model_name} v{result.model_version} on {data}", show_header=False)
    for key, value in result.to_dict().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
