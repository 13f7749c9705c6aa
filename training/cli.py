"""Training commands of `lineguard`: train, train-sensors, evaluate, retrain, export-encoder, quantize, architectures,
demo.

`register` is this package's entry in the `lineguard.commands` entry-point group (pyproject.toml). This
module imports no torch, so that building the CLI does not pay for loading the training stack; each
command checks the training extra, then imports its implementation.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from training.extra import require_training_stack
from training.sensors.cli import GapPeriods, LabelColumn, TimeColumn, csv_columns


def train_command(
    data_dir: Annotated[Path, typer.Argument(help="MVTec-layout folder (train/good) or a folder of normal images")],
    out: Annotated[Path, typer.Option(help="where to write the .onnx model")],
    model: Annotated[
        str | None,
        typer.Option(
            help="registered model (see `lineguard architectures`; default: feature-cae), or auto: every "
            "feature-space model, the best on validation defects kept"
        ),
    ] = None,
    backbone: Annotated[
        str,
        typer.Option(help="pretrained backbone of feature-space models; 'none' trains a model from scratch (cae)"),
    ] = "efficientnet-lite0",
    contrast: Annotated[
        str,
        typer.Option(
            help="per-frame contrast normalisation of feature-space models: auto (chosen on synthetic defects), on, off"
        ),
    ] = "auto",
    size: Annotated[int | None, typer.Option(help="square model input size in pixels (default: the model's)")] = None,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs (default: the model's)")] = None,
    max_minutes: Annotated[
        float, typer.Option(help="time limit for training; a phase it cuts short is a warning (the epochs decide)")
    ] = 15.0,
    batch_size: Annotated[int | None, typer.Option(help="default: the model's")] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="peak learning rate, cosine decay over the budget (default: the model's)")
    ] = None,
    resize_mode: Annotated[str, typer.Option(help="stretch or letterbox (keeps aspect ratio)")] = "stretch",
    latent_channels: Annotated[int, typer.Option(help="bottleneck channels")] = 64,
    dropout: Annotated[float, typer.Option(help="bottleneck dropout (regularisation)")] = 0.1,
    weight_decay: Annotated[float, typer.Option()] = 1e-5,
    false_alarm_rate: Annotated[
        float,
        typer.Option(help="false alarms per normal frame the image threshold allows (tail model of held-out normals)"),
    ] = 1e-3,
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
    corruption: Annotated[
        str, typer.Option(help="what denoising models learn to undo: synthetic, gaussian, salt-pepper, mask, none")
    ] = "synthetic",
    noise_level: Annotated[float, typer.Option(help="gaussian sigma, salt-pepper pixel share, mask area")] = 0.1,
    kl_weight: Annotated[float, typer.Option(help="vae/cvae: KL weight against reconstruction")] = 1e-3,
    kl_warmup_epochs: Annotated[int, typer.Option(help="vae/cvae: epochs over which the KL weight rises")] = 10,
    score: Annotated[str, typer.Option(help="vae/cvae anomaly map: reconstruction or elbo")] = "reconstruction",
    condition_source: Annotated[
        str, typer.Option(help="cvae: where the line reads the condition: camera-id or header:<name>")
    ] = "camera-id",
    pretrain_fraction: Annotated[
        float, typer.Option(help="stacked-ae: budget share for greedy layer-wise pretraining (0: end to end)")
    ] = 0.3,
    encoder_only_out: Annotated[
        Path | None,
        typer.Option(help="also write the encoder alone (image -> embedding) here, for `lineguard cluster`"),
    ] = None,
) -> None:
    """Train on normal images, calibrate thresholds on held-out normals, export one ONNX file."""
    require_training_stack()
    from training.config import TrainConfig
    from training.train import train

    cfg = TrainConfig(
        data_dir=data_dir,
        out=out,
        model=model,
        backbone=backbone,
        contrast=contrast,
        size=size,
        epochs=epochs,
        max_minutes=max_minutes,
        batch_size=batch_size,
        learning_rate=learning_rate,
        resize_mode=resize_mode,
        latent_channels=latent_channels,
        dropout=dropout,
        weight_decay=weight_decay,
        false_alarm_rate=false_alarm_rate,
        labelled_val_dir=val_dir,
        seed=seed,
        model_name=name,
        model_version=version,
        device=device,
        corruption=corruption,
        noise_level=noise_level,
        kl_weight=kl_weight,
        kl_warmup_epochs=kl_warmup_epochs,
        score=score,
        condition_source=condition_source,
        pretrain_fraction=pretrain_fraction,
        encoder_out=encoder_only_out,
    )
    train(cfg)


def evaluate_command(
    model: Annotated[Path, typer.Argument(help="exported .onnx model")],
    data_dir: Annotated[
        Path, typer.Argument(help="MVTec-layout folder with test/ (and ground_truth/); sensor models: labelled CSVs")
    ],
    report: Annotated[Path | None, typer.Option(help="folder for PNG plots and metrics.json")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    time_column: TimeColumn = None,
    label_column: LabelColumn = None,
    gap_periods: GapPeriods = 3.0,
) -> None:
    """Score the test set with onnxruntime and report AUROC, AUPRO and F1 at the stored threshold.

    A sensor model takes labelled CSV recordings instead (a file or a folder) and reports F1, false-alarm
    and missed-alarm rates per point and per window.
    """
    require_training_stack()
    from pipeline.inference import read_metadata
    from training.evaluation.evaluate import evaluate

    if read_metadata(model).kind == "sensor":
        from training.sensors.cli import evaluate_sensor_model

        columns = csv_columns(time_column, label_column, "", gap_periods)
        evaluate_sensor_model(model, data_dir, as_json, columns, report)
        return

    result, predictions = evaluate(model, data_dir)
    if report is not None:
        from training.evaluation.report import write_report

        write_report(result, predictions, report)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    table = Table(title=f"{result.model_name} v{result.model_version} on {data_dir}", show_header=False)
    for key, value in result.to_dict().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def retrain_command(
    base: Annotated[Path, typer.Option(help="the model to improve on (its training config is reused)")],
    normal: Annotated[Path, typer.Option(help="folder of normal images (or MVTec layout with train/good)")],
    out: Annotated[Path, typer.Option(help="where to write the new .onnx model (report files go beside it)")],
    db: Annotated[
        str | None,
        typer.Option("--db", help="database URL holding the reviewed defects (default: LINEGUARD_DATABASE_URL)"),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="only reviews of defects captured since: 7d, 2h or an ISO time")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs (default: the base's)")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="time budget (default: the base's)")] = None,
    version: Annotated[str, typer.Option(help="new model version (default: UTC timestamp)")] = "",
    holdout: Annotated[float, typer.Option(help="fraction of the normal images held out for evaluation")] = 0.2,
) -> None:
    """Retrain on normal images plus reviewed false positives; evaluate new and base on one fixed evaluation set."""
    require_training_stack()
    from pipeline.settings import load_settings
    from pipeline.storage.review import parse_since
    from training.retrain import RetrainConfig, retrain

    cfg = RetrainConfig(
        # from the environment by default: a URL with its password on a command line is visible in `ps` and the pod
        db_url=db if db is not None else load_settings().db_url,
        base=base,
        normal_dir=normal,
        out=out,
        since=parse_since(since) if since else None,
        epochs=epochs,
        max_minutes=max_minutes,
        model_version=version,
        holdout_fraction=holdout,
    )
    report = retrain(cfg)
    table = Table(title=f"v{report.candidate.model_version} against v{report.base.model_version}")
    for column in ("metric", "base", "new"):
        table.add_column(column)
    for name in ("image_auroc", "f1", "false_positive_rate", "normal_false_alarm_rate"):
        cells = [getattr(report.base, name), getattr(report.candidate, name)]
        table.add_row(name, *("n/a" if v is None else f"{v:.4f}" for v in cells))
    Console().print(table)
    typer.echo(f"{len(report.changed)} verdicts changed; report: {out}.report.md; next: lineguard models promote {out}")


def architectures_command() -> None:
    """List the registered model architectures (image models for `train`, sensor models for `train-sensors`)."""
    require_training_stack()
    from training.models import MODELS, SENSOR_MODELS

    for name, entry in sorted((MODELS | SENSOR_MODELS).items()):
        typer.echo(f"{name:21s} {entry.summary}")


def demo_command(
    workdir: Annotated[Path | None, typer.Option(help="folder for data, model and database (default: temp)")] = None,
    frames: Annotated[int, typer.Option(help="frames to stream")] = 600,
    defect_rate: Annotated[float, typer.Option(help="fraction of frames with an injected defect")] = 0.1,
    train_minutes: Annotated[
        float, typer.Option(help="training time limit (on a quiet machine the epochs decide)")
    ] = 3.0,
    size: Annotated[int, typer.Option(help="model input size in pixels (the simulator's frames are 256)")] = 128,
) -> None:
    """Run LineGuard end to end on embedded defaults and print a summary."""
    require_training_stack()
    from training.demo import run_demo

    logging.getLogger("kafka").setLevel(logging.WARNING)  # client chatter would bury the summary
    folder = workdir or Path(tempfile.mkdtemp(prefix="lineguard-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    summary = run_demo(folder, frames, defect_rate, train_minutes, size=size)
    table = Table(title="LineGuard demo", show_header=False)
    for key, value in summary.__dict__.items():
        table.add_row(key.replace("_", " "), f"{value:.2f}" if isinstance(value, float) else str(value))
    Console().print(table)
    Console().print(f"review the defects: lineguard defects list --db {summary.database}")


def export_encoder_command(
    model: Annotated[Path, typer.Argument(help="a trained image model; its checkpoint <model>.ckpt.pt lies beside it")],
    out: Annotated[Path | None, typer.Option(help="where to write the encoder (default: <model>.encoder.onnx)")] = None,
) -> None:
    """Write the encoder of a trained model alone (image -> embedding), for `lineguard cluster`."""
    require_training_stack()
    from pipeline.latent.contract import ENCODER_KIND, sibling
    from training.export.encoder import export_encoder
    from training.export.encoder_checkpoint import rebuild_model

    torch_model, metadata = rebuild_model(model)
    target = out or sibling(model, ENCODER_KIND)
    parity = export_encoder(torch_model, metadata, target)
    typer.echo(json.dumps({"encoder": str(target), "parity_max_abs_diff": parity}))


def quantize_command(
    model: Annotated[Path, typer.Argument(help="a trained fp32 image model (.onnx)")],
    calibration: Annotated[
        Path,
        typer.Option(
            help="normal images (MVTec layout with train/good, or a folder): the quantiser's ranges, and held-out "
            "normals for the new thresholds (split as training split its validation images)"
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="the new file (default: <model>.<precision>.onnx)")] = None,
    validation: Annotated[
        Path | None,
        typer.Option(help="MVTec-layout test set (test/, ground_truth/): image and pixel AUROC before and after"),
    ] = None,
    precision: Annotated[
        str, typer.Option(help="int8: static quantisation, for CPU lines; fp16: half precision, for GPUs")
    ] = "int8",
    calibration_images: Annotated[int, typer.Option(help="normal images the quantiser sets its ranges on")] = 64,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="int8 weight scales per output channel or per layer")
    ] = True,
    float_convs: Annotated[int, typer.Option(help="int8: the first convolutions kept float")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="print the parity as one JSON object")] = False,
) -> None:
    """Convert a trained model for CPU lines (INT8), recalibrate its thresholds on its own scores, report parity."""
    require_training_stack()
    from training.export.quantize import QuantizeConfig, quantize

    cfg = QuantizeConfig(
        model=model,
        calibration_dir=calibration,
        out=out or model.with_name(f"{model.stem}.{precision}.onnx"),
        validation_dir=validation,
        precision=precision,
        calibration_images=calibration_images,
        per_channel=per_channel,
        float_convs=float_convs,
    )
    parity = quantize(cfg)
    if as_json:
        typer.echo(json.dumps(parity.to_dict()))


def register(app: typer.Typer) -> None:
    """Add the training commands to the `lineguard` app (the `training` entry of `lineguard.commands`)."""
    from training.sensors.cli import train_sensors_command

    app.command("train")(train_command)
    app.command("train-sensors")(train_sensors_command)
    app.command("evaluate")(evaluate_command)
    app.command("retrain")(retrain_command)
    app.command("export-encoder")(export_encoder_command)
    app.command("quantize")(quantize_command)
    app.command("architectures")(architectures_command)
    app.command("demo")(demo_command)
