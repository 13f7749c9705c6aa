"""Variational convolutional autoencoder: a spatial Gaussian latent; the mean is decoded at inference."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.blocks import (
    ConvDecoder,
    ConvEncoder,
    ErrorMap,
    ModelOutput,
    check_autoencoder_fields,
    check_score_mode,
    reparameterise,
    variational_output,
)


@dataclass(frozen=True)
class VAEConfig:
    """Encoder widths, latent channels (each a per-location Gaussian) and how the anomaly map is scored.

    `score` "reconstruction": smoothed reconstruction error of the mean path; "elbo": plus `kl_map_weight` x the
    per-location KL of the posterior, so a frame the encoder finds unlikely scores high even if it reconstructs well.
    """

    channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    latent_channels: int = 32
    score: str = "reconstruction"
    kl_map_weight: float = 0.05

    def __post_init__(self) -> None:
        check_autoencoder_fields(self.channels, self.widths, self.latent_channels, dropout=0.0)
        check_score_mode(self.score, self.kl_map_weight)


class ConvVAE(nn.Module):
    """Encoder to (mean, log-variance), reparameterised sample in training, decoder."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.channels, config.widths, config.latent_channels * 2, dropout=0.0)
        self.decoder = ConvDecoder(config.channels, config.widths, config.latent_channels)
        self.error_map = ErrorMap(config.channels)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mean, log_var, latent = reparameterise(self.encoder(x), self.training)
        reconstruction = self.decoder(latent)
        config = self.config
        return variational_output(x, reconstruction, mean, log_var, self.error_map, config.score, config.kl_map_weight)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Images from latents N x latent_channels x h x w (samples of N(0, I) give new images)."""
        return self.decoder(latent)
