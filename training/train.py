"""`lineguard train`: load the normal images, let the model's family fit it (training.models.family; each trains
through training.fitting.fit_loop), export ONNX (plus the encoder and decoder files where asked or offered),
calibrate the thresholds on the exported file's own scores."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from pipeline.contract import ModelMetadata, ScoreStats
from pipeline.inference import OnnxModel
from pipeline.preprocess import InputSpec
from training.backbone import backbone_entry, weights_digest
from training.config import NO_BACKBONE, TrainConfig
from training.data.condition_labels import conditioned_files
from training.data.images import (
    detect_channels,
    files_digest,
    list_images,
    load_images,
    split_validation,
)
from training.data.images import train_folder as find_train_folder
from training.evaluation.calibrate import calibrate_model
from training.export.contract import export_onnx
from training.export.decoder import decoder_path, export_decoder
from training.export.encoder import export_encoder
from training.export.metadata import update_metadata
from training.fitting import FitSummary
from training.models.family import ImageData
from training.models.scoring import ScoringGraph

log = logging.getLogger(__name__)

NO_STATS = ScoreStats(n=0, mean=0.0, std=0.0)  # until calibration on the exported file


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate and export one model; returns the path of the written .onnx file."""
    started = time.monotonic()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)  # checkpoints are written there during the fit
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    family = cfg.entry.family
    folder = find_train_folder(cfg.data_dir)
    # Conditional models take their condition from the subfolder of train/good an image lies in.
    conditioned = conditioned_files(folder) if family.conditional else None
    files = conditioned.files if conditioned is not None else list_images(folder)
    spec = InputSpec(cfg.size, detect_channels(files), cfg.resize_mode)  # type: ignore[arg-type]
    images = load_images(files, spec)
    train_idx, val_idx = split_validation(len(images), cfg.val_fraction, cfg.seed)
    data = ImageData(spec.channels, images[train_idx], images[val_idx])
    if conditioned is not None:
        data = replace(
            data,
            train_conditions=conditioned.indices[train_idx],
            val_conditions=conditioned.indices[val_idx],
            condition_values=conditioned.values,
        )
    log.info("%d training and %d validation images at %s on %s", len(train_idx), len(val_idx), spec, device)
    # what the model needs that the data lacks, said in one line before any training
    family.check_data(cfg.model, data)  # type: ignore[arg-type]
    fitted = family.fit(cfg, data, device)  # type: ignore[arg-type]
    model, summary = fitted.model, fitted.summary
    graph = ScoringGraph(model, cfg.score_pool).eval()
    uncalibrated = ModelMetadata(
        model_name=cfg.model_name or cfg.data_dir.resolve().name,
        model_version=cfg.model_version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        architecture=fitted.architecture,
        kind="image",
        input_size=spec.size,
        input_channels=spec.channels,
        resize_mode=spec.resize_mode,
        image_threshold=0.0,
        pixel_threshold=0.0,
        image_score_stats=NO_STATS,
        pixel_score_stats=NO_STATS,
        train_data_digest=files_digest(files),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training_config={
            **cfg.to_json_dict(),
            "summary": summary.__dict__,
            "backbone": backbone_record(cfg),
            "selection": fitted.selection,
        },
        condition=conditioned.spec(cfg.condition_source) if conditioned is not None else None,
    )
    parity = export_onnx(graph, uncalibrated, cfg.out)
    if cfg.encoder_out is not None:  # embeddings for clustering and classifiers (pipeline.latent)
        export_encoder(model, uncalibrated, cfg.encoder_out)
    if family.has_decoder:  # variational models: a decoder-only file for sampling (docs/models/vae.md)
        export_decoder(model, uncalibrated, decoder_path(cfg.out))
    # Thresholds come from the exported file's own scores: what the line compares is what was
    # calibrated (torch and onnxruntime agree to 1e-3, more than the gap between two close scores).
    metadata = calibrate_model(
        OnnxModel(cfg.out),
        uncalibrated,
        data.val_images,
        cfg.false_alarm_rate,
        cfg.seed,
        cfg.labelled_val_dir,
        data.val_conditions,
        donors=data.train_images,
    )
    update_metadata(cfg.out, metadata)
    print_summary(cfg, metadata, summary, parity, time.monotonic() - started)
    return cfg.out


def backbone_record(cfg: TrainConfig) -> dict[str, str]:
    """Which pretrained weights the model carries, so a site can check their origin and licence."""
    if not cfg.uses_backbone:
        return {"name": NO_BACKBONE}
    entry = backbone_entry(cfg.backbone)
    return {
        "name": cfg.backbone,
        "weights_sha256": weights_digest(cfg.backbone),
        "licence": entry.licence,
        "source": entry.source,
    }


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA requested but not available; training on the CPU")
        return torch.device("cpu")
    return torch.device(requested)


def print_summary(
    cfg: TrainConfig, metadata: ModelMetadata, summary: FitSummary, parity: float, seconds: float
) -> None:
    table = Table(title=f"trained {metadata.model_name} v{metadata.model_version}", show_header=False)
    table.add_row("model", f"{metadata.architecture} at {metadata.input_size}px x {metadata.input_channels} channel(s)")
    table.add_row("epochs", f"{summary.epochs} (best {summary.best_epoch}, stopped by {summary.stopped_by})")
    table.add_row("best validation loss", f"{summary.best_val_loss:.5f}")
    table.add_row("image threshold", f"{metadata.image_threshold:.5f}")
    table.add_row("pixel threshold", f"{metadata.pixel_threshold:.5f}")
    table.add_row("ONNX parity (max abs diff)", f"{parity:.2e}")
    table.add_row("total time", f"{seconds / 60:.1f} min")
    if summary.phase_seconds:
        table.add_row("of which", ", ".join(f"{k} {v:.0f} s" for k, v in summary.phase_seconds.items()))
    table.add_row("written", str(cfg.out))
    Console(stderr=True).print(table)
