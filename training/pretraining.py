"""Greedy layer-wise pretraining of a stacked autoencoder: layer pair k learns to reconstruct the clean output of the
frozen layers below from their output on the corrupted input (a stacked denoising autoencoder), bottom to top; then
everything is unfrozen for end-to-end fine-tuning by the ordinary training loop."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.data.corruptions import corrupt
from training.losses import reconstruction_loss
from training.models.stacked import StackedAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainPlan:
    """How long each layer pair trains: at most `epochs_per_layer`, and an equal share of `minutes` in all."""

    epochs_per_layer: int
    minutes: float
    batch_size: int
    learning_rate: float
    corruption: str
    noise_level: float
    corruption_probability: float
    seed: int = 0


def freeze_for_layer(model: StackedAE, level: int) -> None:
    """Only layer pair `level` trains; the layers below are frozen, batch-norm statistics included (eval mode)."""
    for index, (encoder, decoder) in enumerate(zip(model.encoders, model.decoders, strict=True)):
        trainable = index == level
        for part in (encoder, decoder):
            part.requires_grad_(trainable)
            part.train(trainable)


def unfreeze_all(model: StackedAE) -> None:
    model.requires_grad_(True)
    model.train()


def layer_loss(model: StackedAE, level: int, inputs: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Pair `level` restores the frozen stack's clean features from its features of the corrupted input."""
    with torch.no_grad():
        source, target = model.encode_to(inputs, level), model.encode_to(clean, level)
    restored = model.decoders[level](model.encoders[level](source))
    if level == 0:  # the image itself: the same loss as end-to-end training
        return reconstruction_loss(restored, target)
    return F.mse_loss(restored, target)


def pretrain_layers(model: StackedAE, images: np.ndarray, plan: PretrainPlan, device: torch.device) -> list[float]:
    """Train each layer pair in turn; returns each pair's last-epoch mean loss. Leaves every parameter trainable."""
    rng = np.random.default_rng(plan.seed)
    layers = len(model.encoders)
    deadline = time.monotonic() + plan.minutes * 60
    batches = max(1, len(images) // plan.batch_size)
    losses: list[float] = []
    for level in range(layers):
        freeze_for_layer(model, level)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=plan.learning_rate)
        layer_deadline = time.monotonic() + (deadline - time.monotonic()) / (layers - level)
        total = 0.0
        for _ in range(plan.epochs_per_layer):
            order, total = rng.permutation(len(images)), 0.0
            for step in range(batches):
                clean = images[order[step * plan.batch_size : (step + 1) * plan.batch_size]]
                noisy, _ = corrupt(plan.corruption, clean, images, rng, plan.corruption_probability, plan.noise_level)
                loss = layer_loss(model, level, torch.from_numpy(noisy).to(device), torch.from_numpy(clean).to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            if time.monotonic() > layer_deadline:
                break
        losses.append(total / batches)
        log.info("pretrained layer pair %d of %d: loss %.5f", level + 1, layers, losses[-1])
    unfreeze_all(model)
    return losses
