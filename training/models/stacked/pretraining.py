"""Greedy layer-wise pretraining of a stacked autoencoder: layer pair k learns to reconstruct the clean output of the
frozen layers below from their output on the corrupted input (a stacked denoising autoencoder), bottom to top; then
everything is unfrozen for end-to-end fine-tuning (training.models.from_scratch). Each pair trains through the one
loop (training.fitting.fit_loop) with its `LayerStep`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.data.corruptions import corrupt
from training.fitting import FitPlan, FitStep, fit_loop
from training.models.losses import reconstruction_loss
from training.models.stacked.model import StackedAE

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
    show_progress: bool = False


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


class LayerStep(FitStep):
    """Layer pair `level` on batches of corrupted images; keeps the epoch's mean loss (no validation: the pair's
    last weights stay)."""

    validates = False

    def __init__(
        self,
        model: StackedAE,
        level: int,
        images: np.ndarray,
        plan: PretrainPlan,
        rng: np.random.Generator,
        device: torch.device,
    ) -> None:
        self.model, self.level, self.images, self.plan, self.rng, self.device = model, level, images, plan, rng, device
        self.per_epoch = max(1, len(images) // plan.batch_size)
        self.total = 0.0

    def begin_epoch(self, epoch: int) -> None:
        """No mode change: freeze_for_layer keeps the frozen pairs' batch norm in eval mode."""
        self.total = 0.0

    def batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        images, plan = self.images, self.plan
        order = self.rng.permutation(len(images))
        for step in range(self.per_epoch):
            clean = images[order[step * plan.batch_size : (step + 1) * plan.batch_size]]
            noisy, _ = corrupt(plan.corruption, clean, images, self.rng, plan.corruption_probability, plan.noise_level)
            yield noisy, clean

    def loss(self, batch: Any, epoch: int) -> torch.Tensor:
        noisy, clean = batch
        loss = layer_loss(
            self.model, self.level, torch.from_numpy(noisy).to(self.device), torch.from_numpy(clean).to(self.device)
        )
        self.total += float(loss.detach())
        return loss

    @property
    def epoch_loss(self) -> float:
        """The mean loss of the last epoch's batches."""
        return self.total / self.per_epoch


def pretrain_layers(model: StackedAE, images: np.ndarray, plan: PretrainPlan, device: torch.device) -> list[float]:
    """Train each layer pair in turn; returns each pair's last-epoch mean loss. Leaves every parameter trainable."""
    rng = np.random.default_rng(plan.seed)
    layers = len(model.encoders)
    deadline = time.monotonic() + plan.minutes * 60
    losses: list[float] = []
    for level in range(layers):
        freeze_for_layer(model, level)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=plan.learning_rate)
        step = LayerStep(model, level, images, plan, rng, device)
        pair = FitPlan(
            label=f"pretraining layer pair {level + 1} of {layers}",
            epochs=plan.epochs_per_layer,
            deadline=time.monotonic() + (deadline - time.monotonic()) / (layers - level),
            learning_rate=plan.learning_rate,
            schedule="constant",
            show_progress=plan.show_progress,
            cut_warning="the time budget stopped %s after %d of %d epochs (its share of the pretraining minutes)",
        )
        fit_loop(step, optimizer, pair)
        losses.append(step.epoch_loss)
        log.info("pretrained layer pair %d of %d: loss %.5f", level + 1, layers, losses[-1])
    unfreeze_all(model)
    return losses
