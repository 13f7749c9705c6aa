"""Baseline: a plain convolutional autoencoder; the anomaly map is its smoothed reconstruction error."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.blocks import ConvDecoder, ConvEncoder, ErrorMap, ModelOutput


@dataclass(frozen=True)
class PlainCAEConfig:
    """Encoder widths, bottleneck size and dropout."""

    channels: int = 3
    widths: tuple[int, ...] = (32, 64, 128, 128)
    latent_channels: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive, got {self.widths}")
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


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
