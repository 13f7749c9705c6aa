"""Loss terms on inputs whose values are known."""

from __future__ import annotations

import torch

from training.models.losses import focal_loss, soft_dice_loss


def confident_logits(mask: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    return sign * (mask * 2 - 1) * 20.0


def test_dice_is_zero_for_a_perfect_prediction_and_one_for_the_inverse() -> None:
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, 0, 2:8, 2:8] = 1
    assert float(soft_dice_loss(confident_logits(mask), mask)) < 1e-3
    assert float(soft_dice_loss(confident_logits(mask, sign=-1.0), mask)) > 0.99


def test_focal_loss_down_weights_easy_pixels() -> None:
    mask = torch.zeros(1, 1, 8, 8)
    easy = torch.full_like(mask, -3.0)  # confident and right
    hard = torch.full_like(mask, 3.0)  # confident and wrong
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert float(focal_loss(easy, mask)) < 0.01 * float(bce(easy, mask))
    assert float(focal_loss(hard, mask)) > 0.9 * float(bce(hard, mask))
