"""The conditional VAE's family: the condition vocabulary comes from the training data's subfolders
(training.data.condition_labels), each image trains with its index (the shared denoising step,
training.models.from_scratch), and the latent code and decoder take the condition too."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch

from pipeline.contract import ModelMetadata
from training.models.cvae.model import ConditionalVAE, broadcast
from training.models.family import ImageData
from training.models.from_scratch import FromScratchFamily
from training.models.vae.family import spatial_latent

log = logging.getLogger(__name__)


class CVAEFamily(FromScratchFamily[ConditionalVAE]):
    """`cvae`."""

    conditional: ClassVar[bool] = True
    has_decoder: ClassVar[bool] = True

    def check_data(self, name: str, data: ImageData) -> None:
        if not data.condition_values:
            log.warning(
                "%s: train/good has no condition subfolders (one per camera or variant), so every image trains the "
                "unconditional path, which the line then uses for every frame",
                name,
            )

    def data_overrides(self, data: ImageData) -> dict[str, Any]:
        return {"num_conditions": len(data.condition_values or ()) + 1}  # + index 0, "unknown"

    def rebuild_overrides(self, metadata: ModelMetadata) -> dict[str, Any]:
        values = metadata.condition.values if metadata.condition is not None else ()
        return {"num_conditions": len(values) + 1}

    def latent_code(
        self, model: ConditionalVAE, image: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        embedding = model.embedding(model.conditions_or_unknown(condition, image))
        return model.encoder(torch.cat([image, broadcast(embedding, image)], 1)).chunk(2, dim=1)[0]

    def decode(
        self, model: ConditionalVAE, latent: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        return model.decode(latent, model.conditions_or_unknown(condition, latent))

    def latent_shape(self, model: ConditionalVAE, image_size: int) -> tuple[int, int, int]:
        return spatial_latent(model.config, image_size)


CVAE = CVAEFamily()
