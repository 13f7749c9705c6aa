"""1-D convolutional autoencoder on multichannel sensor windows (plain, or denoising with input noise)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from training.models.blocks import ModelOutput


@dataclass(frozen=True)
class SensorCAEConfig:
    """Strided-convolution widths (each halves the time axis), kernel size, dropout and training input noise.

    `noise_std` > 0 makes it a denoising autoencoder: Gaussian noise (in normalised units) is added to
    the input in training only, and the target stays the clean window.
    """

    channels: int = 8
    widths: tuple[int, ...] = (32, 16)
    kernel_size: int = 7
    dropout: float = 0.2
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        check_sensor_fields(self.channels, self.widths, self.kernel_size, self.dropout)
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    @property
    def time_multiple(self) -> int:
        """Window lengths must be divisible by this, so that the decoder returns the input length."""
        return 2 ** len(self.widths)


@dataclass(frozen=True)
class SensorDAEConfig(SensorCAEConfig):
    """The denoising variant: the same network, trained on windows with noise added."""

    noise_std: float = 0.2


def check_sensor_fields(channels: int, widths: tuple[int, ...], kernel_size: int, dropout: float) -> None:
    """Checks every sensor autoencoder config shares; errors name the field and the bad value."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive, got {widths}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def sensor_encoder(channels: int, widths: tuple[int, ...], kernel: int, dropout: float, out: int) -> nn.Sequential:
    """Stride-2 convolutions; the last one has `out` channels (twice the latent for a variational model)."""
    layers: list[nn.Module] = []
    sizes = [channels, *widths[:-1], out]
    for index, (before, after) in enumerate(pairwise(sizes)):
        layers += [nn.Conv1d(before, after, kernel, stride=2, padding=kernel // 2)]
        if index < len(widths) - 1:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def sensor_decoder(channels: int, widths: tuple[int, ...], kernel: int, dropout: float) -> nn.Sequential:
    """Transposed convolutions that double the time axis, then a linear projection back to the channels."""
    layers: list[nn.Module] = [nn.ReLU()]
    sizes = [*reversed(widths), widths[0]]
    for index, (before, after) in enumerate(pairwise(sizes)):
        layers += [nn.ConvTranspose1d(before, after, kernel, stride=2, padding=kernel // 2, output_padding=1)]
        layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if index == 0 else [])
    layers.append(nn.Conv1d(widths[0], channels, kernel, padding=kernel // 2))
    return nn.Sequential(*layers)


class SensorCAE(nn.Module):
    """Encoder, decoder; the anomaly map is the absolute error per channel and time step (N x C x T)."""

    def __init__(self, config: SensorCAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = sensor_encoder(
            config.channels, config.widths, config.kernel_size, config.dropout, config.widths[-1]
        )
        self.decoder = sensor_decoder(config.channels, config.widths, config.kernel_size, config.dropout)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        noisy = x + torch.randn_like(x) * self.config.noise_std if self.training and self.config.noise_std else x
        reconstruction = self.decoder(self.encoder(noisy))
        # error against the clean input: a denoiser is judged by how far its output is from the truth
        return ModelOutput(reconstruction, (x - reconstruction).abs())
