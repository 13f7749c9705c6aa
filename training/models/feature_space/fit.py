"""Training of the feature-space autoencoders: backbone features of the normal images are extracted
once and cached; the autoencoder trains on the cache (`FeatureStep`), then the image restorer on cached features of
corrupted copies (`RestorerStep`, so it learns to give back the clean part). Both run through the one loop,
training.fitting.fit_loop."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from training.data.synthetic_defects import corrupt_batch
from training.fitting import FitPlan, FitStep, FitSummary, fit_loop
from training.models.family import ImageRun
from training.models.feature_space.model import FeatureSpaceAutoencoder
from training.models.losses import reconstruction_loss

log = logging.getLogger(__name__)

# Share of the time budget for the feature autoencoder(s); the restorer gets the rest. The anomaly
# map depends on the autoencoder only, so it gets most of the time.
FEATURE_SHARE = 0.7
# Optimiser steps the image restorer trains by default, whatever the number of images: 150 to 400 steps gave the same
# restoration on both shared sets (PSNR 21-23 dB), 50 a blurred one.
RESTORER_STEPS = 160


@torch.no_grad()
def extract_features(
    model: FeatureSpaceAutoencoder, images: np.ndarray, device: torch.device, batch: int = 32
) -> list[torch.Tensor]:
    """Backbone features of every image, one tensor per tapped stride, kept on `device`."""
    model.eval()
    parts: list[list[torch.Tensor]] = []
    for start in range(0, len(images), batch):
        parts.append(model.extract(torch.from_numpy(images[start : start + batch]).to(device)))
    return [torch.cat(scale) for scale in zip(*parts, strict=True)]


def take(features: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor]:
    return [scale[index] for scale in features]


class FeatureStep(FitStep):
    """The autoencoder on batches of cached training features; validation on the held-out normals' features."""

    def __init__(
        self,
        model: FeatureSpaceAutoencoder,
        train_features: list[torch.Tensor],
        val_features: list[torch.Tensor],
        batch_size: int,
        generator: torch.Generator,
    ) -> None:
        self.model, self.train_features, self.val_features = model, train_features, val_features
        self.batch_size, self.generator = batch_size, generator

    def batches(self, epoch: int) -> Iterator[list[torch.Tensor]]:
        n, device = len(self.train_features[0]), self.train_features[0].device
        order = torch.randperm(n, generator=self.generator)
        for start in range(0, n - 1, self.batch_size):
            batch = take(self.train_features, order[start : start + self.batch_size].to(device))
            if len(batch[0]) >= 2:  # batch norm needs two samples
                yield batch

    def loss(self, batch: Any, epoch: int) -> torch.Tensor:
        return self.model.feature_loss(batch)

    def validation_loss(self) -> float:
        return feature_validation_loss(self.model, self.val_features)


def fit_feature_model(
    model: FeatureSpaceAutoencoder,
    train_features: list[torch.Tensor],
    val_features: list[torch.Tensor],
    run: ImageRun,
    epochs: int,
    deadline: float,
) -> FitSummary:
    """Fit the autoencoder on cached features for `epochs` or until `deadline` (time.monotonic()), with early stopping
    on the held-out normals' features; the learning rate decays over whichever of the two is nearer. Then the map's
    scoring fitted on the training features (FeatureSpaceAutoencoder.fit_scoring: the per-location scale, a memory)."""
    generator = torch.Generator().manual_seed(run.seed)
    model.fit_statistics(train_features)
    autoencoder_params, _ = model.trainable_groups()
    optimizer = torch.optim.AdamW(autoencoder_params, lr=run.learning_rate, weight_decay=run.weight_decay)
    step = FeatureStep(model, train_features, val_features, run.batch_size, generator)
    plan = FitPlan(
        label="feature autoencoder",
        epochs=epochs,
        deadline=deadline,
        learning_rate=run.learning_rate,
        patience=run.patience,
        schedule="epoch",
        show_progress=run.show_progress,
    )
    summary = fit_loop(step, optimizer, plan)
    model.fit_scoring(train_features)
    return summary


@torch.no_grad()
def feature_validation_loss(model: FeatureSpaceAutoencoder, features: list[torch.Tensor], batch: int = 32) -> float:
    model.eval()
    n = len(features[0])
    total = 0.0
    for start in range(0, n, batch):
        chunk = [scale[start : start + batch] for scale in features]
        total += float(model.feature_loss(chunk)) * len(chunk[0])
    return total / n


@torch.no_grad()
def frozen_reconstructions(
    model: FeatureSpaceAutoencoder, features: list[torch.Tensor], batch: int = 32
) -> torch.Tensor:
    """The restorer's inputs, computed once: the feature model does not change while the restorer trains."""
    model.eval()
    n = len(features[0])
    return torch.cat([model.reconstruct([f[i : i + batch] for f in features])[1] for i in range(0, n, batch)])


def restorer_epochs(run: ImageRun, images: int) -> int:
    """The restorer's epochs: as configured, or enough for RESTORER_STEPS optimiser steps on `images` images."""
    if run.restorer_epochs is not None:
        return run.restorer_epochs
    return math.ceil(RESTORER_STEPS / max(1, math.ceil(images / run.batch_size)))


class RestorerStep(FitStep):
    """The image restorer on what the frozen autoencoder rebuilt from corrupted images, against the clean images.
    No validation: the anomaly map does not depend on the restorer, so its last weights stay."""

    validates = False

    def __init__(
        self,
        model: FeatureSpaceAutoencoder,
        inputs: torch.Tensor,
        clean: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
    ) -> None:
        self.model, self.inputs, self.clean = model, inputs, clean
        self.batch_size, self.generator = batch_size, generator

    def begin_epoch(self, epoch: int) -> None:
        """The autoencoder stays frozen (eval mode: its batch norm too); only the restorer trains."""
        self.model.eval()
        self.model.restorer.train()

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self.clean), generator=self.generator).to(self.clean.device)
        for start in range(0, len(self.clean) - 1, self.batch_size):
            index = order[start : start + self.batch_size]
            if len(index) >= 2:
                yield index

    def loss(self, batch: Any, epoch: int) -> torch.Tensor:
        return reconstruction_loss(self.model.restorer(self.inputs[batch]), self.clean[batch])


def fit_restorer(
    model: FeatureSpaceAutoencoder, train_images: np.ndarray, run: ImageRun, device: torch.device, deadline: float
) -> None:
    """Train the image restorer on features of corrupted normal images against the clean images.

    The autoencoder is frozen here: the restorer reads what the autoencoder rebuilt, so a defect the
    autoencoder removed from the features is also absent from the restored frame.
    """
    epochs = min(restorer_epochs(run, len(train_images)), run.epochs)  # --epochs bounds every phase, the restorer's too
    if epochs == 0:
        return
    rng = np.random.default_rng(run.seed + 2)
    corrupted, _ = corrupt_batch(train_images, train_images, rng, run.defect_probability)
    restorer_inputs = frozen_reconstructions(model, extract_features(model, corrupted, device))
    clean = torch.from_numpy(train_images).to(device)
    optimizer = torch.optim.AdamW(model.restorer.parameters(), lr=run.learning_rate, weight_decay=run.weight_decay)
    generator = torch.Generator().manual_seed(run.seed + 3)
    plan = FitPlan(
        label="image restorer",
        epochs=epochs,
        deadline=deadline,
        learning_rate=run.learning_rate,
        schedule="epoch",
        show_progress=run.show_progress,
        cut_warning="the time budget stopped the %s after %d of %d epochs (the anomaly map does not depend on it; "
        "the restored frames may be blurrier)",
    )
    fit_loop(RestorerStep(model, restorer_inputs, clean, run.batch_size, generator), optimizer, plan)
    model.eval()
