"""The variational autoencoder's family: the shared denoising step (training.models.from_scratch, its KL term warmed
up by training.models.losses.kl_warmup), the posterior mean as its latent code, and its decoder for sampling."""

from __future__ import annotations

from typing import ClassVar

import torch

from training.models.from_scratch import FromScratchFamily
from training.models.vae.model import ConvVAE, VAEConfig


def spatial_latent(config: VAEConfig, image_size: int) -> tuple[int, int, int]:
    """latent_channels x h x w of a convolutional VAE (each width halves the resolution)."""
    side = image_size // 2 ** len(config.widths)
    return (config.latent_channels, side, side)


class VAEFamily(FromScratchFamily[ConvVAE]):
    """`vae`."""

    has_decoder: ClassVar[bool] = True

    def latent_code(self, model: ConvVAE, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        return model.encoder(image).chunk(2, dim=1)[0]

    def decode(self, model: ConvVAE, latent: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        return model.decode(latent)

    def latent_shape(self, model: ConvVAE, image_size: int) -> tuple[int, int, int]:
        return spatial_latent(model.config, image_size)


VAE = VAEFamily()
