"""Training commands of the `lineguard` CLI: `train`, `evaluate`, `models`, `demo`.

This module imports no torch itself, so that `lineguard consume` on a line machine does not pay for
loading the training stack; each command imports its implementation when called.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.errors import LineGuardError
from training.config import TrainConfig

TRAINING_EXTRA_HINT = "pip install torch==2.13.0 'lineguard[train]'"


def require_training_stack() -> None:
    """Fail with the install command when the training extra is missing (e.g. on a line image)."""
    for module in ("torch", "sklearn", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            raise LineGuardError(f"this command needs the training extra ({module} is missing): {TRAINING_EXTRA_HINT}")


def train_command(
    data_dir: Annotated[Path, typer.Argument(help="MVTec-layout folder (train/good) or a folder of normal images")],
    out: Annotated[Path, typer.Option(help="where to write the .onnx model")],
    model: Annotated[str, typer.Option(help="registered model (see `lineguard models`)")] = "cae",
    size: Annotated[int, typer.Option(help="square model input size in pixels")] = 128,
    epochs: Annotated[int, typer.Option(help="maximum epochs")] = 300,
    max_minutes: Annotated[float, typer.Option(help="training time budget")] = 9.0,
    batch_size: Annotated[int, typer.Option()] = 8,
    learning_rate: Annotated[float, typer.Option(help="peak learning rate (cosine decay over the budget)")] = 2e-3,
    resize_mode: Annotated[str, typer.Option(help="stretch or letterbox (keeps aspect ratio)")] = "stretch",
    latent_channels: Annotated[int, typer.Option(help="bottleneck channels")] = 64,
    dropout: Annotated[float, typer.Option(help="bottleneck dropout (regularisation)")] = 0.1,
    weight_decay: Annotated[float, typer.Option()] = 1e-5,
    sensitivity: Annotated[float, typer.Option(help="threshold margin in std of normal scores")] = 0.0,
    val_dir: Annotated[
        Path | None,
        typer.Option(
            help="labelled validation set (MVTec test/ layout) for an F1-optimal threshold; never the test set"
        ),
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    name: Annotated[str, typer.Option(help="model name (default: data folder name)")] = "",
    version: Annotated[str, typer.Option(help="model version (default: UTC timestamp)")] = "",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Train on normal images, calibrate thresholds on held-out normals, export one ONNX file."""
    require_training_stack()
    from training.train import train

    cfg = TrainConfig(
        data_dir=data_dir,
        out=out,
        model=model,
        size=size,
        epochs=epochs,
        max_minutes=max_minutes,
        batch_size=batch_size,
        learning_rate=learning_rate,
        resize_mode=resize_mode,
        latent_channels=latent_channels,
        dropout=dropout,
        weight_decay=weight_decay,
        sensitivity=sensitivity,
        labelled_val_dir=val_dir,
        seed=seed,
        model_name=name,
        model_version=version,
        device=device,
    )
    train(cfg)


def evaluate_command(
    model: Annotated[Path, typer.Argument(help="exported .onnx model")],
    data_dir: Annotated[Path, typer.Argument(help="MVTec-layout folder with test/ (and ground_truth/)")],
    report: Annotated[Path | None, typer.Option(help="folder for PNG plots and metrics.json")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Score the test set with onnxruntime and report AUROC, AUPRO and F1 at the stored threshold."""
    require_training_stack()
    from training.evaluate import evaluate

    result, predictions = evaluate(model, data_dir)
    if report is not None:
        from training.report import write_report

        write_report(result, predictions, report)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    table = Table(title=f"{result.model_name} v{result.model_version} on {data_dir}", show_header=False)
    for key, value in result.to_dict().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def models_command() -> None:
    """List the registered models."""
    require_training_stack()
    from training.models import MODELS

    for name in sorted(MODELS):
        typer.echo(f"{name:12s} {MODELS[name].summary}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("models")(models_command)
    from training.demo import demo_command

    app.command("demo")(demo_command)
