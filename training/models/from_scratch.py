"""What the image models trained from scratch share (cae, cae-plain, vae, cvae, stacked-ae): their family base and
their training step, denoising reconstruction.

Each epoch visits the training images in a fresh order; every batch is corrupted (`corruption`: what the model learns
to undo, training.data.corruptions) and the model is trained to give back the clean images (training.models.losses:
squared + structural error, plus the segmentation head's and the KL terms where the model has them). Validation runs
on a fixed corrupted copy of the held-out normals, so that its losses compare across epochs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data.corruptions import corrupt
from training.fitting import FitPlan, FitStep, FitSummary, fit_loop
from training.models.blocks import ModelOutput
from training.models.family import Fitted, ImageData, ImageFamily, ImageRun, M
from training.models.losses import LossWeights, kl_warmup, total_loss


@dataclass(frozen=True)
class Budget:
    """What the end-to-end fit may spend: epochs and minutes (less than the run's after a pretraining phase)."""

    epochs: int
    minutes: float


class FromScratchFamily(ImageFamily[M]):
    """An image family trained end to end on denoising reconstruction, optionally after a pretraining phase."""

    def fit(self, run: ImageRun, data: ImageData, device: torch.device) -> Fitted:
        model = run.create_model(run.model, data.channels, **self.data_overrides(data))
        # channels-last convolutions run about 3x faster on CPU (oneDNN) and do not hurt on CUDA
        model = model.to(device, memory_format=torch.channels_last)
        budget, record = self.pretrain(model, run, data, device)  # type: ignore[arg-type]
        summary = fit_denoising(model, data, run, budget, device)
        return Fitted(run.model, model.cpu().to(memory_format=torch.contiguous_format), summary, record)

    def pretrain(
        self, model: M, run: ImageRun, data: ImageData, device: torch.device
    ) -> tuple[Budget, list[dict[str, object]]]:
        """A phase before the end-to-end fit (stacked-ae: greedy layer-wise pretraining); returns the budget left for
        the fit and a record of the phase for the metadata. None by default: the fit gets the whole run."""
        return Budget(run.epochs, run.max_minutes), []


def fit_denoising(model: nn.Module, data: ImageData, run: ImageRun, budget: Budget, device: torch.device) -> FitSummary:
    """Epochs of denoising (run.corruption) until the budget's time, its epoch cap or early stopping."""
    step = DenoisingStep(model, data, run, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.learning_rate, weight_decay=run.weight_decay)
    plan = FitPlan(
        label="training",
        epochs=budget.epochs,
        deadline=time.monotonic() + budget.minutes * 60,
        learning_rate=run.learning_rate,
        patience=run.patience,
        schedule="step",
        checkpoint=run.checkpoint,
        show_progress=run.show_progress,
    )
    return fit_loop(step, optimizer, plan)


class DenoisingStep(FitStep):
    """Batches of corrupted training images against their clean selves; conditional models get each image's
    condition index."""

    def __init__(self, model: nn.Module, data: ImageData, run: ImageRun, device: torch.device) -> None:
        self.model, self.data, self.run, self.device = model, data, run, device
        self.rng = np.random.default_rng(run.seed)
        self.weights = LossWeights(run.ssim_weight, run.segmentation_weight, run.kl_weight)
        # A fixed corrupted copy of the validation normals keeps validation losses comparable across epochs.
        self.val_inputs, self.val_masks = corrupt(
            run.corruption,
            data.val_images,
            data.train_images,
            np.random.default_rng(run.seed + 1),
            run.defect_probability,
            run.noise_level,
        )

    def batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
        """(inputs, clean, masks, conditions) per batch; the last incomplete batch is left out."""
        images, size, run = self.data.train_images, self.run.batch_size, self.run
        order = self.rng.permutation(len(images))
        for step in range(max(1, len(images) // size)):
            chosen = order[step * size : (step + 1) * size]
            clean = images[chosen]
            inputs, masks = corrupt(run.corruption, clean, images, self.rng, run.defect_probability, run.noise_level)
            conditions = self.data.train_conditions
            yield inputs, clean, masks, conditions[chosen] if conditions is not None else None

    def loss(self, batch: Any, epoch: int) -> torch.Tensor:
        inputs, clean, masks, conditions = batch
        # Validation keeps the full KL weight: best-epoch choice must not favour the warm-up's lighter loss.
        warm = replace(self.weights, kl=kl_warmup(self.run.kl_weight, epoch, self.run.kl_warmup_epochs))
        output = run_model(self.model, to_device(inputs, self.device), conditions)
        device = self.device
        loss, _ = total_loss(output, torch.from_numpy(clean).to(device), torch.from_numpy(masks).to(device), warm)
        return loss

    @torch.no_grad()
    def validation_loss(self, batch: int = 32) -> float:
        self.model.eval()
        inputs, clean, masks = self.val_inputs, self.data.val_images, self.val_masks
        conditions = self.data.val_conditions
        total = 0.0
        for start in range(0, len(inputs), batch):
            chosen = conditions[start : start + batch] if conditions is not None else None
            output = run_model(self.model, torch.from_numpy(inputs[start : start + batch]).to(self.device), chosen)
            loss, _ = total_loss(
                output,
                torch.from_numpy(clean[start : start + batch]).to(self.device),
                torch.from_numpy(masks[start : start + batch]).to(self.device),
                self.weights,
            )
            total += float(loss) * len(output.reconstruction)
        return total / len(inputs)


def run_model(model: nn.Module, inputs: torch.Tensor, conditions: np.ndarray | None) -> ModelOutput:
    """Forward, with the condition indices for a conditional model."""
    if conditions is None:
        return model(inputs)
    return model(inputs, torch.from_numpy(conditions).to(inputs.device))


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(array).to(device).contiguous(memory_format=torch.channels_last)
