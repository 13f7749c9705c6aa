"""The training loop: fit a registered model on normal images, calibrate its thresholds, export ONNX."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from pipeline.contract import ModelMetadata, ScoreStats
from pipeline.inference import OnnxModel
from pipeline.preprocess import InputSpec
from training.backbone import backbone_entry, weights_digest
from training.config import NO_BACKBONE, TrainConfig
from training.data.condition_labels import conditioned_files
from training.data.corruptions import corrupt
from training.data.images import (
    detect_channels,
    files_digest,
    list_images,
    load_images,
    load_test_set,
    split_validation,
)
from training.data.images import train_folder as find_train_folder
from training.data.synthetic_defects import corrupt_batch
from training.evaluation.calibrate import budget_threshold, f1_optimal_threshold, pixel_threshold, score_stats
from training.export.contract import ScoringGraph, export_onnx, update_metadata
from training.export.decoder import decoder_path, export_decoder
from training.export.encoder import export_encoder
from training.feature_selection import fit_best_feature_model
from training.fitting import (
    BestEpoch,
    FitSummary,
    cosine_learning_rate,
    progress_bar,
    set_learning_rate,
)
from training.losses import LossWeights, kl_warmup, total_loss
from training.models import create_model
from training.models.blocks import ModelOutput
from training.models.stacked import StackedAE
from training.pretraining import PretrainPlan, pretrain_layers

log = logging.getLogger(__name__)

NO_STATS = ScoreStats(n=0, mean=0.0, std=0.0)  # until calibration on the exported file


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate and export one model; returns the path of the written .onnx file."""
    started = time.monotonic()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)  # checkpoints are written there during the fit
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    folder = find_train_folder(cfg.data_dir)
    # Conditional models take their condition from the subfolder of train/good an image lies in.
    conditioned = conditioned_files(folder) if cfg.entry.conditional else None
    files = conditioned.files if conditioned is not None else list_images(folder)
    spec = InputSpec(cfg.size, detect_channels(files), cfg.resize_mode)  # type: ignore[arg-type]
    images = load_images(files, spec)
    train_idx, val_idx = split_validation(len(images), cfg.val_fraction, cfg.seed)
    train_images, val_images = images[train_idx], images[val_idx]
    train_conditions = conditioned.indices[train_idx] if conditioned is not None else None
    val_conditions = conditioned.indices[val_idx] if conditioned is not None else None
    log.info("%d training and %d validation images at %s on %s", len(train_idx), len(val_idx), spec, device)

    selection: list[dict[str, object]] = []
    architecture = cfg.model
    if cfg.uses_backbone:
        architecture, model, summary, selection = fit_best_feature_model(
            cfg, spec.channels, train_images, val_images, device
        )
    else:
        overrides = cfg.model_overrides()
        if conditioned is not None:
            overrides["num_conditions"] = len(conditioned.values) + 1  # + index 0, "unknown"
        model = create_model(cfg.model, spec.channels, **overrides)
        # channels-last convolutions run about 3x faster on CPU (oneDNN) and do not hurt on CUDA
        model = model.to(device, memory_format=torch.channels_last)
        fit_cfg, selection = maybe_pretrain(model, cfg, train_images, device)
        summary = fit(model, train_images, val_images, fit_cfg, device, train_conditions, val_conditions)
        model = model.cpu().to(memory_format=torch.contiguous_format)
    graph = ScoringGraph(model, cfg.score_pool).eval()
    uncalibrated = ModelMetadata(
        model_name=cfg.model_name or cfg.data_dir.resolve().name,
        model_version=cfg.model_version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        architecture=architecture,
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
            "selection": selection,
        },
        condition=conditioned.spec(cfg.condition_source) if conditioned is not None else None,
    )
    parity = export_onnx(graph, uncalibrated, cfg.out)
    if cfg.encoder_out is not None:  # embeddings for clustering and classifiers (pipeline.latent)
        export_encoder(model, uncalibrated, cfg.encoder_out)
    if hasattr(model, "decode"):  # variational models: a decoder-only file for sampling (docs/models/vae.md)
        export_decoder(model, uncalibrated, decoder_path(cfg.out))
    # Thresholds come from the exported file's own scores: what the line compares is what was
    # calibrated (torch and onnxruntime agree to 1e-3, more than the gap between two close scores).
    metadata = calibrate_exported(cfg, uncalibrated, val_images, val_conditions, donors=train_images)
    update_metadata(cfg.out, metadata)
    print_summary(cfg, metadata, summary, parity, time.monotonic() - started)
    return cfg.out


def calibrate_exported(
    cfg: TrainConfig,
    metadata: ModelMetadata,
    val_images: np.ndarray,
    val_conditions: np.ndarray | None = None,
    donors: np.ndarray | None = None,
) -> ModelMetadata:
    """Thresholds and normal-score statistics from the exported model's own scores on held-out normals.

    Image: the false-alarm budget (a tail model of the normal scores), or F1-optimal on a labelled validation
    set. Pixel: chosen on synthetic defects pasted into the same normals
    (training.evaluation.calibrate.pixel_threshold).
    """
    exported = OnnxModel(cfg.out)
    val = exported.score_in_chunks(val_images, conditions=val_conditions)
    budget = budget_threshold(val.score, cfg.false_alarm_rate, seed=cfg.seed)
    image_threshold, false_alarm = budget.threshold, budget.spec
    if cfg.labelled_val_dir is not None:
        labelled = load_test_set(cfg.labelled_val_dir, metadata.input_spec)
        image_threshold = f1_optimal_threshold(exported.score_in_chunks(labelled.images).score, labelled.labels)
        false_alarm = None
    corrupted, masks = corrupt_batch(
        val_images, val_images if donors is None else donors, np.random.default_rng(cfg.seed + 7), probability=1.0
    )
    defect_maps = exported.score_in_chunks(corrupted, conditions=val_conditions).anomaly_map
    return replace(
        metadata,
        image_threshold=image_threshold,
        pixel_threshold=pixel_threshold(val.anomaly_map, defect_maps, masks),
        image_score_stats=score_stats(val.score),
        pixel_score_stats=score_stats(val.anomaly_map[:, :, ::4, ::4]),
        false_alarm=false_alarm,
    )


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


def maybe_pretrain(
    model: nn.Module, cfg: TrainConfig, images: np.ndarray, device: torch.device
) -> tuple[TrainConfig, list[dict[str, object]]]:
    """Greedy layer-wise pretraining of a stacked model on `pretrain_fraction` of the budget; returns the config of
    the end-to-end fine-tuning (the rest of the budget) and a record of the pretraining for the metadata."""
    if not isinstance(model, StackedAE) or cfg.pretrain_fraction == 0:
        return cfg, []
    share = cfg.pretrain_fraction
    plan = PretrainPlan(
        epochs_per_layer=max(1, round(cfg.epochs * share / len(model.encoders))),  # type: ignore[operator]
        minutes=cfg.max_minutes * share,
        batch_size=cfg.batch_size,  # type: ignore[arg-type]
        learning_rate=cfg.learning_rate,  # type: ignore[arg-type]
        corruption=cfg.corruption,
        noise_level=cfg.noise_level,
        corruption_probability=cfg.defect_probability,
        seed=cfg.seed,
    )
    losses = pretrain_layers(model, images, plan, device)
    rest = replace(cfg, max_minutes=cfg.max_minutes * (1 - share), epochs=max(1, round(cfg.epochs * (1 - share))))  # type: ignore[operator]
    return rest, [{"pretraining": "greedy layer-wise", "layer_losses": [round(v, 6) for v in losses]}]


def run_model(model: nn.Module, inputs: torch.Tensor, conditions: np.ndarray | None) -> ModelOutput:
    """Forward, with the condition indices for a conditional model."""
    if conditions is None:
        return model(inputs)
    return model(inputs, torch.from_numpy(conditions).to(inputs.device))


def fit(
    model: nn.Module,
    train_images: np.ndarray,
    val_images: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    train_conditions: np.ndarray | None = None,
    val_conditions: np.ndarray | None = None,
) -> FitSummary:
    """Epochs of denoising (cfg.corruption) until the time budget, the epoch cap or early stopping."""
    rng = np.random.default_rng(cfg.seed)
    weights = LossWeights(cfg.ssim_weight, cfg.segmentation_weight, cfg.kl_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    # A fixed corrupted copy of the validation normals keeps validation losses comparable across epochs.
    val_inputs, val_masks = corrupt(
        cfg.corruption,
        val_images,
        train_images,
        np.random.default_rng(cfg.seed + 1),
        cfg.defect_probability,
        cfg.noise_level,
    )
    deadline = time.monotonic() + cfg.max_minutes * 60
    started = time.monotonic()
    best = BestEpoch(model, cfg.patience, deadline, cfg.epochs)  # type: ignore[arg-type]
    epoch = 0
    batches_per_epoch = max(1, len(train_images) // cfg.batch_size)
    with progress_bar(cfg.show_progress) as progress:
        task = progress.add_task("training", total=cfg.epochs)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = rng.permutation(len(train_images))
            # Validation keeps the full KL weight: best-epoch choice must not favour the warm-up's lighter loss.
            warm = replace(weights, kl=kl_warmup(cfg.kl_weight, epoch, cfg.kl_warmup_epochs))
            for step in range(batches_per_epoch):
                chosen = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                clean = train_images[chosen]
                inputs, masks = corrupt(
                    cfg.corruption, clean, train_images, rng, cfg.defect_probability, cfg.noise_level
                )
                progress_fraction = max((time.monotonic() - started) / (deadline - started), (epoch - 1) / cfg.epochs)
                set_learning_rate(optimizer, cosine_learning_rate(cfg.learning_rate, progress_fraction))
                conditions = train_conditions[chosen] if train_conditions is not None else None
                output = run_model(model, to_device(inputs, device), conditions)
                loss, _ = total_loss(
                    output, torch.from_numpy(clean).to(device), torch.from_numpy(masks).to(device), warm
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            val_loss = validation_loss(
                model, val_inputs, val_images, val_masks, weights, device, conditions=val_conditions
            )
            if best.update(epoch, val_loss):
                torch.save(best.state, cfg.out.with_suffix(".ckpt.pt"))
            progress.update(task, advance=1, description=f"epoch {epoch} val {val_loss:.4f} best {best.loss:.4f}")
            if best.should_stop(epoch):
                break
    return best.restore(epoch, started)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(array).to(device).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def validation_loss(
    model: nn.Module,
    inputs: np.ndarray,
    clean: np.ndarray,
    masks: np.ndarray,
    weights: LossWeights,
    device: torch.device,
    batch: int = 32,
    conditions: np.ndarray | None = None,
) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(inputs), batch):
        chosen = conditions[start : start + batch] if conditions is not None else None
        output = run_model(model, torch.from_numpy(inputs[start : start + batch]).to(device), chosen)
        loss, _ = total_loss(
            output,
            torch.from_numpy(clean[start : start + batch]).to(device),
            torch.from_numpy(masks[start : start + batch]).to(device),
            weights,
        )
        total += float(loss) * len(output.reconstruction)
    return total / len(inputs)


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
