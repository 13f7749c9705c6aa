"""The model registry: an explicit map from each registered name to its config class, constructor, defaults and
family (training.models.family: how it trains and exports).

One folder per family holds its torch module, config and family: feature_cae/, reverse_distillation/ (both on
feature_space/, their shared base and training), cae/ (cae, cae-plain), vae/, cvae/, stacked/ (all on
from_scratch.py, the shared denoising step), sensor/ (sensor-cae, sensor-dae, sensor-vae). Shared pieces sit beside
them: blocks.py (layers, ModelOutput), losses.py, scoring.py (ScoringGraph, what the line runs), family.py (the
interface).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from torch import nn

from training.errors import ConfigError, UnknownModelError
from training.models.cae import CAE, CAEConfig, DenoisingSegmentingCAE, PlainCAE, PlainCAEConfig
from training.models.cvae import CVAE, ConditionalVAE, CVAEConfig
from training.models.family import ImageFamily, ModelFamily, SensorFamily
from training.models.feature_cae import FEATURE_CAE, FeatureCAE, FeatureCAEConfig
from training.models.reverse_distillation import REVERSE_DISTILLATION, ReverseDistillation, ReverseDistillationConfig
from training.models.sensor import SENSOR, SensorCAE, SensorCAEConfig, SensorDAEConfig, SensorVAE, SensorVAEConfig
from training.models.stacked import STACKED, StackedAE, StackedAEConfig
from training.models.vae import VAE, ConvVAE, VAEConfig

F = TypeVar("F", bound=ModelFamily)


@dataclass(frozen=True)
class ModelEntry(Generic[F]):
    """A registered model: its config dataclass, its constructor, what it is, its defaults and its family."""

    config_class: type
    build: Callable[[Any], nn.Module]
    summary: str
    defaults: TrainDefaults
    family: F

    @property
    def uses_backbone(self) -> bool:
        return self.family.uses_backbone

    @property
    def conditional(self) -> bool:
        """Takes a condition index per image (training.data.condition_labels, pipeline.contract)."""
        return self.family.conditional


@dataclass(frozen=True)
class TrainDefaults:
    """Training settings a model is tuned for, used where the run's config leaves them unset."""

    size: int
    batch_size: int
    learning_rate: float
    epochs: int


FROM_SCRATCH = TrainDefaults(size=128, batch_size=8, learning_rate=2e-3, epochs=300)
# Feature-space models train on cached features: many cheap epochs, larger batches.
IN_FEATURE_SPACE = TrainDefaults(size=224, batch_size=16, learning_rate=1e-3, epochs=40)

MODELS: dict[str, ModelEntry[ImageFamily[Any]]] = {
    "feature-cae": ModelEntry(
        FeatureCAEConfig,
        FeatureCAE,
        "convolutional autoencoder with a spatial bottleneck reconstructing frozen pretrained features (default)",
        IN_FEATURE_SPACE,
        FEATURE_CAE,
    ),
    "reverse-distillation": ModelEntry(
        ReverseDistillationConfig,
        ReverseDistillation,
        "frozen pretrained encoder, one-class bottleneck, student decoder; cosine distance",
        IN_FEATURE_SPACE,
        REVERSE_DISTILLATION,
    ),
    "cae": ModelEntry(
        CAEConfig, DenoisingSegmentingCAE, "denoising CAE + defect-segmentation head, from scratch", FROM_SCRATCH, CAE
    ),
    "cae-plain": ModelEntry(
        PlainCAEConfig, PlainCAE, "plain convolutional autoencoder, reconstruction error", FROM_SCRATCH, CAE
    ),
    "vae": ModelEntry(
        VAEConfig, ConvVAE, "variational convolutional autoencoder, reconstruction error", FROM_SCRATCH, VAE
    ),
    "cvae": ModelEntry(
        CVAEConfig,
        ConditionalVAE,
        "conditional VAE: camera or variant enters encoder and decoder; unknown values use the unconditional path",
        FROM_SCRATCH,
        CVAE,
    ),
    "stacked-ae": ModelEntry(
        StackedAEConfig,
        StackedAE,
        "stacked autoencoder: greedy layer-wise pretraining, then end-to-end fine-tuning (pretrain_fraction)",
        FROM_SCRATCH,
        STACKED,
    ),
}
DEFAULT_MODEL = "feature-cae"
# `--model auto`: every feature-space model is a candidate, chosen on the validation defects like the settings
AUTO_MODEL = "auto"
FEATURE_MODEL_NAMES = tuple(sorted(name for name, entry in MODELS.items() if entry.uses_backbone))

# Sensor models take N x C x T windows of readings (`size` is the window length in samples) and are kept
# apart from MODELS: `lineguard train` must not accept them for images, nor `train-sensors` image models.
SENSOR_WINDOWS = TrainDefaults(size=60, batch_size=32, learning_rate=1e-3, epochs=100)
SENSOR_MODELS: dict[str, ModelEntry[SensorFamily]] = {
    "sensor-cae": ModelEntry(
        SensorCAEConfig, SensorCAE, "1-D convolutional autoencoder on sensor windows", SENSOR_WINDOWS, SENSOR
    ),
    "sensor-dae": ModelEntry(
        SensorDAEConfig,
        SensorCAE,
        "1-D denoising autoencoder: trained on noisy windows, clean targets",
        SENSOR_WINDOWS,
        SENSOR,
    ),
    "sensor-vae": ModelEntry(
        SensorVAEConfig, SensorVAE, "1-D variational autoencoder on sensor windows", SENSOR_WINDOWS, SENSOR
    ),
}
DEFAULT_SENSOR_MODEL = "sensor-cae"
DEFAULT_SCRATCH_MODEL = "cae"


log = logging.getLogger(__name__)


def model_names() -> list[str]:
    return sorted(MODELS)


def model_entry(name: str) -> ModelEntry[ImageFamily[Any]]:
    if name not in MODELS:
        raise UnknownModelError(name, model_names())
    return MODELS[name]


def create_model(name: str, channels: int, **overrides: Any) -> nn.Module:
    """Build a registered model; `overrides` set fields of its config (None: keep the model's default).

    A key no registered model has is an error listing this model's keys (a typo must not train a
    default model). A key only other models have (`dropout` for `vae`: the training config passes
    its knobs to every model) is ignored with a warning that names it.
    """
    entry = model_entry(name)
    valid = sorted(f.name for f in fields(entry.config_class) if f.name != "channels")
    given = {key: value for key, value in overrides.items() if value is not None}
    anywhere = {f.name for other in MODELS.values() for f in fields(other.config_class)}
    unknown = sorted(given.keys() - anywhere)
    if unknown:
        key = unknown[0]
        raise ConfigError(key, given[key], f"model {name!r} has no such field; valid keys: {', '.join(valid)}")
    ignored = sorted(given.keys() - set(valid))
    if ignored:
        log.warning("model %r takes no %s: ignored", name, ", ".join(ignored))
    config = entry.config_class(channels=channels, **{k: v for k, v in given.items() if k in valid})
    return entry.build(config)


def sensor_model_entry(name: str) -> ModelEntry[SensorFamily]:
    if name not in SENSOR_MODELS:
        raise UnknownModelError(name, sorted(SENSOR_MODELS))
    return SENSOR_MODELS[name]


def create_sensor_model(name: str, channels: int, **overrides: Any) -> nn.Module:
    """Build a registered sensor model; `overrides` set fields of its config (None: keep the model's default)."""
    entry = sensor_model_entry(name)
    valid = sorted(f.name for f in fields(entry.config_class) if f.name != "channels")
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(given.keys() - set(valid))
    if unknown:
        raise ConfigError(
            unknown[0], given[unknown[0]], f"model {name!r} has no such field; valid keys: {', '.join(valid)}"
        )
    return entry.build(entry.config_class(channels=channels, **given))
