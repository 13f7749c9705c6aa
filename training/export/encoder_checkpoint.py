"""`lineguard export-encoder`: the encoder of a model trained earlier, rebuilt from the checkpoint `train` keeps
beside it (`<model>.ckpt.pt`) and the training config in its metadata, checked against the scoring file first."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.contract import ModelMetadata
from pipeline.inference import read_metadata
from training.config import TrainConfig
from training.errors import ExportParityError, TrainingError
from training.export.contract import parity_check
from training.models import model_entry
from training.models.scoring import ScoringGraph

TUPLE_FIELDS = ("widths",)  # JSON hands lists back


def checkpoint_path(model_path: Path) -> Path:
    return model_path.with_suffix(".ckpt.pt")


def config_of(metadata: ModelMetadata) -> TrainConfig:
    """The TrainConfig the model was trained with (fields added since take their defaults)."""
    stored = metadata.training_config
    if not stored.get("model"):
        raise TrainingError(f"model {metadata.model_name} v{metadata.model_version} carries no training config")
    values: dict[str, Any] = {f.name: stored[f.name] for f in fields(TrainConfig) if f.name in stored}
    if isinstance(values.get("backbone"), dict):  # train() stores the backbone's record (name, digest, licence)
        values["backbone"] = values["backbone"]["name"]
    for name in TUPLE_FIELDS:
        if name in values:
            values[name] = tuple(values[name])
    for name in ("data_dir", "out", "labelled_val_dir", "encoder_out"):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    return TrainConfig(**values)


def rebuild_model(model_path: Path) -> tuple[nn.Module, ModelMetadata]:
    """The trained torch model behind `model_path`; an error when its checkpoint is missing or is another model's."""
    metadata = read_metadata(model_path)
    checkpoint = checkpoint_path(model_path)
    if not checkpoint.is_file():
        raise TrainingError(
            f"{model_path} has no checkpoint beside it ({checkpoint.name}): train it again with --encoder-only-out"
        )
    cfg = config_of(metadata)
    family = model_entry(metadata.architecture).family
    model = cfg.create_model(metadata.architecture, metadata.input_channels, **family.rebuild_overrides(metadata))
    try:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        parity_check(ScoringGraph(model.eval(), cfg.score_pool), model_path)
    except (RuntimeError, ExportParityError) as exc:
        raise TrainingError(
            f"{checkpoint.name} does not reproduce {model_path.name} ({exc}); was it retrained?"
        ) from exc
    return model, metadata
