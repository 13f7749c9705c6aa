"""The feature-reconstruction autoencoder's family: trained as every feature-space model is
(training.models.feature_space); its latent code is the autoencoder's spatial code of the standardised features."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from training.models.feature_cae.model import FeatureCAE
from training.models.feature_space.family import FeatureSpaceFamily


class FeatureCAEFamily(FeatureSpaceFamily[FeatureCAE]):
    """`feature-cae`."""

    # before 2026-12-07: a stride-2 code and the reconstruction distance alone
    fields_before_record: ClassVar[dict[str, Any]] = {"bottleneck_stride": 2, "code_memory": 0}

    def latent_code(
        self, model: FeatureCAE, image: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        return model.encoder(model.standardised(model.backbone(model.contrast(image))))


FEATURE_CAE = FeatureCAEFamily()
