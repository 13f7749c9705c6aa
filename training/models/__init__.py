"""The model registry: an explicit map from name to (config class, constructor)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from training.errors import UnknownModelError
from training.models.cae import CAEConfig, DenoisingSegmentingCAE
from training.models.cae_plain import PlainCAE, PlainCAEConfig
from training.models.vae import ConvVAE, VAEConfig


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its config dataclass, its constructor and what it is."""

    config_class: type
    build: Callable[[Any], nn.Module]
    summary: str


MODELS: dict[str, ModelEntry] = {
    "cae": ModelEntry(CAEConfig, DenoisingSegmentingCAE, "denoising CAE + defect-segmentation head (default)"),
    "cae-plain": ModelEntry(PlainCAEConfig, PlainCAE, "plain convolutional autoencoder, reconstruction error"),
    "vae": ModelEntry(VAEConfig, ConvVAE, "variational convolutional autoencoder, reconstruction error"),
}


def model_names() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, channels: int, **overrides: Any) -> nn.Module:
    """Build a registered model; `overrides` set config fields that the model's config has."""
    if name not in MODELS:
        raise UnknownModelError(name, model_names())
    entry = MODELS[name]
    known = {f.name for f in fields(entry.config_class)}
    config = entry.config_class(channels=channels, **{k: v for k, v in overrides.items() if k in known})
    return entry.build(config)
