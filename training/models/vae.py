"""Variational convolutional autoencoder: a spatial Gaussian latent; the mean is decoded at inference."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.blocks import ConvDecoder, ConvEncoder, ErrorMap, ModelOutput, check_autoencoder_fields


@dataclass(frozen=True)
class VAEConfig:
    """Encoder widths and the number of latent channels (each a per-location Gaussian)."""

    channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    latent_channels: int = 32

    def __post_init__(self) -> None:
        check_autoencoder_fields(self.channels, self.widths, self.latent_channels, dropout=0.0)


class ConvVAE(nn.Module):
    """Encoder to (mean, log-variance), reparameterised sample in training, decoder."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.channels, config.widths, config.latent_channels * 2, dropout=0.0)
        self.decoder = ConvDecoder(config.channels, config.widths, config.latent_channels)
        self.error_map = ErrorMap(config.channels)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        log_var = log_var.clamp(-10, 10)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
        reconstruction = self.decoder(latent)
        kl = -0.5 * torch.mean(1 + log_var - mean.pow(2) - log_var.exp())
        return ModelOutput(reconstruction, self.error_map(x, reconstruction), kl_divergence=kl)
