"""Variational 1-D convolutional autoencoder on sensor windows; the latent mean is decoded at inference."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.blocks import ModelOutput
from training.models.sensor.cae import SensorCAEConfig, sensor_decoder, sensor_encoder


@dataclass(frozen=True)
class SensorVAEConfig(SensorCAEConfig):
    """Same knobs as the plain model; the last width is the number of latent channels (Gaussian each)."""


class SensorVAE(nn.Module):
    """Encoder to (mean, log-variance) per latent time step, reparameterised sample in training, decoder."""

    def __init__(self, config: SensorVAEConfig) -> None:
        super().__init__()
        self.config = config
        latent = config.widths[-1]
        self.encoder = sensor_encoder(config.channels, config.widths, config.kernel_size, config.dropout, latent * 2)
        self.decoder = sensor_decoder(config.channels, config.widths, config.kernel_size, config.dropout)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        noisy = x + torch.randn_like(x) * self.config.noise_std if self.training and self.config.noise_std else x
        mean, log_var = self.encoder(noisy).chunk(2, dim=1)
        log_var = log_var.clamp(-10, 10)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
        reconstruction = self.decoder(latent)
        kl = -0.5 * torch.mean(1 + log_var - mean.pow(2) - log_var.exp())
        return ModelOutput(reconstruction, (x - reconstruction).abs(), kl_divergence=kl)
