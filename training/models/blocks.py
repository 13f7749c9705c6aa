"""Building blocks shared by the registered models and the output every model returns."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from training.ssim import gaussian_blur, gaussian_kernel, ssim_map


class ModelOutput(NamedTuple):
    """What every model's forward returns; optional parts feed the training losses only."""

    reconstruction: torch.Tensor  # N x C x H x W in [0, 1]
    anomaly_map: torch.Tensor  # N x 1 x H x W, higher = more anomalous
    segmentation_logits: torch.Tensor | None = None  # N x 1 x H x W, for models with a defect head
    kl_divergence: torch.Tensor | None = None  # scalar, for variational models


def check_autoencoder_fields(channels: int, widths: tuple[int, ...], latent_channels: int, dropout: float) -> None:
    """The field checks every autoencoder config shares; errors name the field and the bad value."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive, got {widths}")
    if latent_channels < 1:
        raise ValueError(f"latent_channels must be >= 1, got {latent_channels}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Bilinear 2x upsampling then a conv block (no checkerboard artefacts of transposed convs)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        conv_block(in_channels, out_channels),
    )


class ConvEncoder(nn.Module):
    """Strided conv stages down to a bottleneck of `latent_channels` at 1/2**len(widths) resolution."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], latent_channels: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_block(in_channels, widths[0])]
        previous = widths[0]
        for width in widths:
            layers += [conv_block(previous, width, stride=2), conv_block(width, width)]
            previous = width
        layers += [nn.Dropout2d(dropout), nn.Conv2d(previous, latent_channels, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: upsampling stages back to `out_channels` in [0, 1]."""

    def __init__(self, out_channels: int, widths: tuple[int, ...], latent_channels: int) -> None:
        super().__init__()
        reversed_widths = tuple(reversed(widths))
        layers: list[nn.Module] = [conv_block(latent_channels, reversed_widths[0])]
        previous = reversed_widths[0]
        for width in (*reversed_widths[1:], reversed_widths[-1]):
            layers += [up_block(previous, width), conv_block(width, width)]
            previous = width
        layers += [nn.Conv2d(previous, out_channels, 3, padding=1), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class ErrorMap(nn.Module):
    """Anomaly map from a reconstruction: smoothed mix of structural (1 - SSIM) and squared error."""

    def __init__(self, channels: int, ssim_sigma: float = 1.5, smooth_sigma: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("ssim_kernel", gaussian_kernel(ssim_sigma, channels), persistent=False)
        self.register_buffer("smooth_kernel", gaussian_kernel(smooth_sigma, 1), persistent=False)

    def forward(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        structural = (1 - ssim_map(x, reconstruction, self.ssim_kernel)).mean(dim=1, keepdim=True)
        squared = ((x - reconstruction) ** 2).mean(dim=1, keepdim=True)
        return gaussian_blur(0.5 * structural + squared, self.smooth_kernel)


def check_score_mode(score: str, kl_map_weight: float) -> None:
    """The scoring knobs of the variational models."""
    if score not in SCORE_MODES:
        raise ValueError(f"score must be one of {SCORE_MODES}, got {score!r}")
    if kl_map_weight < 0:
        raise ValueError(f"kl_map_weight must be >= 0, got {kl_map_weight}")


SCORE_MODES = ("reconstruction", "elbo")


def reparameterise(stats: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split encoder output into (mean, log-variance) and draw the latent: a sample in training, the mean otherwise.

    The mean path is what is exported, so the line's scores are deterministic.
    """
    mean, log_var = stats.chunk(2, dim=1)
    log_var = log_var.clamp(-10, 10)  # exp() of an unclamped log-variance overflows early in training
    latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if training else mean
    return mean, log_var, latent


def kl_terms(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent element, N x C x h x w."""
    return -0.5 * (1 + log_var - mean.pow(2) - log_var.exp())


def variational_output(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    mean: torch.Tensor,
    log_var: torch.Tensor,
    error_map: ErrorMap,
    score: str,
    kl_map_weight: float,
) -> ModelOutput:
    """What a variational model returns: its anomaly map (reconstruction error, + KL for "elbo") and the mean KL."""
    kl = kl_terms(mean, log_var)
    anomaly_map = variational_map(error_map(x, reconstruction), kl, score, kl_map_weight, x.shape[-2:])
    return ModelOutput(reconstruction, anomaly_map, kl_divergence=kl.mean())


def variational_map(
    error_map: torch.Tensor, kl: torch.Tensor, score: str, kl_map_weight: float, size: tuple[int, int]
) -> torch.Tensor:
    """Reconstruction-error map, plus (score "elbo") the per-location KL upsampled: the two terms of the ELBO."""
    if score == "reconstruction" or kl_map_weight == 0:
        return error_map
    per_location = torch.nn.functional.interpolate(kl.mean(dim=1, keepdim=True), size=size, mode="bilinear")
    return error_map + kl_map_weight * per_location
