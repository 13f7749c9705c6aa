"""The convolutional autoencoders from scratch (`cae`: denoising + defect-segmentation head; `cae-plain`): trained by
the shared denoising step (training.models.from_scratch); their latent code is the encoder's output."""

from __future__ import annotations

import torch

from training.models.cae.model import DenoisingSegmentingCAE
from training.models.cae.plain import PlainCAE
from training.models.from_scratch import FromScratchFamily


class CAEFamily(FromScratchFamily[DenoisingSegmentingCAE | PlainCAE]):
    """`cae` and `cae-plain`."""

    def latent_code(
        self, model: DenoisingSegmentingCAE | PlainCAE, image: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        return model.encoder(image)


CAE = CAEFamily()
