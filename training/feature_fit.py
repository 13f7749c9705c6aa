"""Training of the feature-space autoencoders: backbone features of the normal images are extracted
once and cached; the autoencoder trains on the cache, then the image restorer on cached features of
corrupted copies (so it learns to give back the clean part)."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from training.config import TrainConfig
from training.data.synthetic_defects import corrupt_batch
from training.fitting import BestEpoch, FitSummary, cosine_learning_rate, progress_bar, set_learning_rate
from training.losses import reconstruction_loss
from training.models.feature_space import FeatureSpaceAutoencoder

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


def fit_feature_model(
    model: FeatureSpaceAutoencoder,
    train_features: list[torch.Tensor],
    val_features: list[torch.Tensor],
    cfg: TrainConfig,
    epochs: int,
    deadline: float,
) -> FitSummary:
    """Fit the autoencoder on cached features for `epochs` or until `deadline` (time.monotonic()), with early stopping
    on the held-out normals' features; the learning rate decays over whichever of the two is nearer. Then the map's
    per-location scale on the training features (FeatureSpaceAutoencoder.fit_location_scale)."""
    started = time.monotonic()
    generator = torch.Generator().manual_seed(cfg.seed)
    model.fit_statistics(train_features)
    device = train_features[0].device
    autoencoder_params, _ = model.trainable_groups()
    optimizer = torch.optim.AdamW(autoencoder_params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    best = BestEpoch(model, cfg.patience, deadline, epochs)
    epoch = 0
    n = len(train_features[0])
    with progress_bar(cfg.show_progress) as progress:
        task = progress.add_task("feature autoencoder", total=epochs)
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator)
            fraction = max((time.monotonic() - started) / max(deadline - started, 1e-6), (epoch - 1) / epochs)
            set_learning_rate(optimizer, cosine_learning_rate(cfg.learning_rate, fraction))
            for start in range(0, n - 1, cfg.batch_size):
                batch = take(train_features, order[start : start + cfg.batch_size].to(device))
                if len(batch[0]) < 2:  # batch norm needs two samples
                    continue
                loss = model.feature_loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            val_loss = feature_validation_loss(model, val_features)
            best.update(epoch, val_loss)
            progress.update(task, advance=1, description=f"epoch {epoch} val {val_loss:.4f} best {best.loss:.4f}")
            if best.should_stop(epoch):
                break
    summary = best.restore(epoch, started)
    model.fit_location_scale(train_features)
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


def restorer_epochs(cfg: TrainConfig, images: int) -> int:
    """The restorer's epochs: as configured, or enough for RESTORER_STEPS optimiser steps on `images` images."""
    if cfg.restorer_epochs is not None:
        return cfg.restorer_epochs
    return math.ceil(RESTORER_STEPS / max(1, math.ceil(images / cfg.batch_size)))


def fit_restorer(
    model: FeatureSpaceAutoencoder, train_images: np.ndarray, cfg: TrainConfig, device: torch.device, deadline: float
) -> None:
    """Train the image restorer on features of corrupted normal images against the clean images.

    The autoencoder is frozen here: the restorer reads what the autoencoder rebuilt, so a defect the
    autoencoder removed from the features is also absent from the restored frame.
    """
    epochs = min(restorer_epochs(cfg, len(train_images)), cfg.epochs)  # --epochs bounds every phase, the restorer's too
    if epochs == 0:
        return
    rng = np.random.default_rng(cfg.seed + 2)
    corrupted, _ = corrupt_batch(train_images, train_images, rng, cfg.defect_probability)
    restorer_inputs = frozen_reconstructions(model, extract_features(model, corrupted, device))
    clean = torch.from_numpy(train_images).to(device)
    optimizer = torch.optim.AdamW(model.restorer.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed + 3)
    started = time.monotonic()
    model.eval()
    model.restorer.train()
    with progress_bar(cfg.show_progress) as progress:
        task = progress.add_task("image restorer", total=epochs)
        for epoch in range(epochs):
            fraction = max((time.monotonic() - started) / max(deadline - started, 1e-6), epoch / epochs)
            set_learning_rate(optimizer, cosine_learning_rate(cfg.learning_rate, fraction))
            order = torch.randperm(len(clean), generator=generator).to(device)
            for start in range(0, len(clean) - 1, cfg.batch_size):
                index = order[start : start + cfg.batch_size]
                if len(index) < 2:
                    continue
                loss = reconstruction_loss(model.restorer(restorer_inputs[index]), clean[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            progress.update(task, advance=1, description=f"image restorer epoch {epoch + 1}")
            if time.monotonic() > deadline and epoch + 1 < epochs:
                log.warning(
                    "the time budget stopped the image restorer after %d of %d epochs (the anomaly map does not "
                    "depend on it; the restored frames may be blurrier)",
                    epoch + 1,
                    epochs,
                )
                break
    model.eval()
