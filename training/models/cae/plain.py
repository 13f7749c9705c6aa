"""Baseline: a plain convolutional autoencoder; the anomaly map is its smoothed reconstruction error."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.blocks import ConvDecoder, ConvEncoder, ErrorMap, ModelOutput, check_autoencoder_fields


@dataclass(frozen=True)
class PlainCAEConfig:
    """Encoder widths, bottleneck size and dropout."""

    channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    latent_channels: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_autoencoder_fields(self.channels, self.widths, self.latent_channels, self.dropout)


class PlainCAE(nn.Module):
    """Encoder, bottleneck, decoder; trained to reproduce its (optionally corrupted) input."""

    def __init__(self, config: PlainCAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.channels, config.widths, config.latent_channels, config.dropout)
        self.decoder = ConvDecoder(config.channels, config.widths, config.latent_channels)
        self.error_map = ErrorMap(config.channels)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        reconstruction = self.decoder(self.encoder(x))
        return ModelOutput(reconstruction, self.error_map(x, reconstruction))
