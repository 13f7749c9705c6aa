"""Training losses: reconstruction (squared + structural), defect segmentation (focal) and KL."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from training.models.blocks import ModelOutput
from training.ssim import gaussian_kernel, ssim_map


@dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term; a term whose model output is absent is skipped."""

    ssim: float = 1.0
    segmentation: float = 1.0
    kl: float = 1e-3


def kl_warmup(weight: float, epoch: int, warmup_epochs: int) -> float:
    """KL weight of a 1-based epoch: 0 in the first, rising linearly to `weight` after `warmup_epochs`.

    A full-weight KL from the start pulls every posterior onto the prior before the decoder has learnt anything
    (posterior collapse: all inputs decode to one blurred mean image); the warm-up lets reconstruction lead.
    """
    if warmup_epochs <= 0:
        return weight
    return weight * min(1.0, (epoch - 1) / warmup_epochs)


@lru_cache(maxsize=8)
def _ssim_window(channels: int) -> torch.Tensor:
    # built once per channel count rather than on every training step
    return gaussian_kernel(1.5, channels)


def reconstruction_loss(reconstruction: torch.Tensor, clean: torch.Tensor, ssim_weight: float = 1.0) -> torch.Tensor:
    """Squared error plus ssim_weight x (1 - SSIM): pixel values and local structure both count."""
    window = _ssim_window(clean.shape[1]).to(clean.device)
    return F.mse_loss(reconstruction, clean) + ssim_weight * (1 - ssim_map(reconstruction, clean, window).mean())


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss: down-weights the easy background pixels that dominate defect masks."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-bce)
    return ((1 - p_true) ** gamma * bce).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice overlap of predicted probabilities and the mask over the batch.

    Focal loss alone leaves defect probabilities near 0.5 (it stops pushing once a pixel is 'easy
    enough'), which caps and compresses image scores; the Dice term rewards confident coverage.
    """
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum()
    return 1 - (2 * overlap + eps) / (probability.sum() + target.sum() + eps)


def total_loss(
    output: ModelOutput, clean: torch.Tensor, mask: torch.Tensor, weights: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of the terms that apply to this model's output; also returns each term for logging."""
    kernel = _ssim_window(clean.shape[1]).to(clean.device)
    terms = {
        "mse": F.mse_loss(output.reconstruction, clean),
        "ssim": weights.ssim * (1 - ssim_map(output.reconstruction, clean, kernel).mean()),
    }
    if output.segmentation_logits is not None:
        logits = output.segmentation_logits
        terms["segmentation"] = weights.segmentation * (focal_loss(logits, mask) + soft_dice_loss(logits, mask))
    if output.kl_divergence is not None:
        terms["kl"] = weights.kl * output.kl_divergence
    loss = torch.stack(list(terms.values())).sum()
    return loss, {name: float(value.detach()) for name, value in terms.items()}
