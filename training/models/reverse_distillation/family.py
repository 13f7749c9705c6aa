"""Reverse distillation's family: trained as every feature-space model is (training.models.feature_space); its latent
code is the one-class bottleneck's code of the teacher's features."""

from __future__ import annotations

import torch

from training.models.feature_space.family import FeatureSpaceFamily
from training.models.reverse_distillation.model import ReverseDistillation


class ReverseDistillationFamily(FeatureSpaceFamily[ReverseDistillation]):
    """`reverse-distillation`."""

    def latent_code(
        self, model: ReverseDistillation, image: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        return model.bottleneck(model.backbone(model.contrast(image)))


REVERSE_DISTILLATION = ReverseDistillationFamily()
