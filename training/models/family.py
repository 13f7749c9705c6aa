"""The one interface of a model family: what training, the exports and the benches ask of a model, whatever it is.

Each folder under training/models/ is a family: its torch module and config (`model.py`), and its `family.py` with
the training step it runs through the one loop (training.fitting.fit_loop) and the hooks below. The registry
(training.models) maps every registered name to its family, so `training.train.train`, the encoder and decoder
exports (training.export) and `training.sensors.train` call these methods and never look at a model's class.

A family reads the run's settings through `ImageRun` / `SensorRun` (training.config.TrainConfig and
training.sensors.config.SensorTrainConfig are those), so that training.models does not import the configs that
import it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from pipeline.contract import ModelMetadata
from training.errors import TrainingError
from training.fitting import FitSummary

M = TypeVar("M", bound=nn.Module)


class FitSettings(Protocol):
    """What every training run, image or sensor, sets for the loop (training.fitting.fit_loop)."""

    epochs: int
    max_minutes: float
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    show_progress: bool


class ImageRun(FitSettings, Protocol):
    """The settings of an image training run that a family reads (training.config.TrainConfig)."""

    model: str  # the registered name asked for (or `auto`: see `candidates`)
    candidates: tuple[str, ...]  # the names a feature-space run chooses among
    seed: int
    checkpoint: Path  # where the best weights are kept (`<model>.ckpt.pt`)
    # denoising: what the input is corrupted with (training.data.corruptions)
    corruption: str
    defect_probability: float
    noise_level: float
    # loss weights of the from-scratch models (training.models.losses)
    ssim_weight: float
    segmentation_weight: float
    kl_weight: float
    kl_warmup_epochs: int
    pretrain_fraction: float  # stacked-ae
    restorer_epochs: int | None  # feature-space models
    contrast: str  # feature-space models: auto, on or off
    score_pool: int

    def create_model(self, name: str, channels: int, **extra: Any) -> nn.Module:
        """The registered model `name` with this run's config fields, plus `extra` fields."""
        ...


class SensorRun(FitSettings, Protocol):
    """The settings of a sensor training run that a family reads (training.sensors.config.SensorTrainConfig)."""

    kl_weight: float


@dataclass(frozen=True)
class ImageData:
    """The normal images a run trains on, split into training and held-out validation images.

    Conditional families get each image's condition index (0: unknown, i + 1: `condition_values[i]`) and the
    vocabulary; for the others these are None.
    """

    channels: int
    train_images: np.ndarray
    val_images: np.ndarray
    train_conditions: np.ndarray | None = None
    val_conditions: np.ndarray | None = None
    condition_values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Fitted:
    """A trained image model and how it came about."""

    architecture: str  # the registered name trained (for `auto`: the one chosen)
    model: nn.Module  # on the CPU
    summary: FitSummary
    selection: list[dict[str, object]]  # what the family chose or did besides the fit (the metadata's `selection`)


class ModelFamily:
    """What every family says about itself."""

    uses_backbone: ClassVar[bool] = False  # works in a frozen pretrained backbone's feature space
    conditional: ClassVar[bool] = False  # takes a condition index per image (training.data.condition_labels)


class ImageFamily(ModelFamily, ABC, Generic[M]):
    """An image model family: how its models train, what the data must give them, their latent code and decoder."""

    has_decoder: ClassVar[bool] = False  # a decoder-only file for sampling is exported beside the model (vae, cvae)

    def check_data(self, name: str, data: ImageData) -> None:
        """Say in one line, before training, what model `name` needs that the data lacks: a warning when it trains
        anyway, a training.errors.DatasetError when it cannot. Nothing by default."""

    def data_overrides(self, data: ImageData) -> dict[str, Any]:
        """Config fields the training data sets (the conditional model's vocabulary size)."""
        return {}

    def rebuild_overrides(self, metadata: ModelMetadata) -> dict[str, Any]:
        """Config fields that rebuild the trained model from its metadata, beyond the stored training config
        (training.export.encoder_checkpoint)."""
        return {}

    @abstractmethod
    def fit(self, run: ImageRun, data: ImageData, device: torch.device) -> Fitted:
        """Build the run's model and train it on `data`; the model comes back on the CPU."""

    @abstractmethod
    def latent_code(self, model: M, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The model's bottleneck for a batch of images, N x D x h x w (variational models: the posterior mean);
        what the encoder file exports (training.export.encoder)."""

    def decode(self, model: M, latent: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Images from spatial latents N x D x h x w (families with `has_decoder`; training.export.decoder)."""
        raise TrainingError(f"{type(model).__name__} has no decoder to export")

    def latent_shape(self, model: M, image_size: int) -> tuple[int, int, int]:
        """The spatial latent D x h x w that `decode` takes at this input size (families with `has_decoder`)."""
        raise TrainingError(f"{type(model).__name__} has no decoder to export")


class SensorFamily(ModelFamily, ABC):
    """A sensor model family: how its models train on normalised windows N x C x T."""

    @abstractmethod
    def fit(self, model: nn.Module, train_windows: np.ndarray, val_windows: np.ndarray, run: SensorRun) -> FitSummary:
        """Train `model` on the training windows, the best epoch chosen on the held-out ones."""
