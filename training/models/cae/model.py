"""Default model: a denoising convolutional autoencoder with a defect-segmentation head (DRAEM-style).

The autoencoder learns to restore normal appearance from images with synthetic defects; the head
compares input and restoration and learns where they differ in a way that matters. Both are plain
convolutions, so the whole thing exports to one ONNX graph.
"""

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
    conv_block,
    up_block,
)
from training.ssim import gaussian_blur, gaussian_kernel


@dataclass(frozen=True)
class CAEConfig:
    """Widths of the reconstruction encoder, bottleneck size, dropout and the segmentation head width."""

    channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    latent_channels: int = 64
    dropout: float = 0.1
    head_width: int = 8
    map_smoothing_sigma: float = 2.0
    error_map_weight: float = 0.25

    def __post_init__(self) -> None:
        check_autoencoder_fields(self.channels, self.widths, self.latent_channels, self.dropout)
        if self.head_width < 4:
            raise ValueError(f"head_width must be >= 4, got {self.head_width}")
        if self.error_map_weight < 0:
            raise ValueError(f"error_map_weight must be >= 0, got {self.error_map_weight}")
        if self.map_smoothing_sigma <= 0:
            raise ValueError(f"map_smoothing_sigma must be > 0, got {self.map_smoothing_sigma}")


class SegmentationHead(nn.Module):
    """Small U-Net over (input, reconstruction) that outputs one defect logit per pixel."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(conv_block(in_channels, width), conv_block(width, width))
        self.enc2 = nn.Sequential(conv_block(width, width * 2, stride=2), conv_block(width * 2, width * 2))
        self.enc3 = nn.Sequential(conv_block(width * 2, width * 4, stride=2), conv_block(width * 4, width * 4))
        self.enc4 = nn.Sequential(conv_block(width * 4, width * 4, stride=2), conv_block(width * 4, width * 4))
        self.up3 = up_block(width * 4, width * 4)
        self.dec3 = conv_block(width * 8, width * 2)
        self.up2 = up_block(width * 2, width * 2)
        self.dec2 = conv_block(width * 4, width)
        self.up1 = up_block(width, width)
        self.dec1 = conv_block(width * 2, width)
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        d3 = self.dec3(torch.cat([self.up3(e4), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.out(d1)


class DenoisingSegmentingCAE(nn.Module):
    """Autoencoder (no skip connections, so defects cannot pass through) plus segmentation head."""

    def __init__(self, config: CAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.channels, config.widths, config.latent_channels, config.dropout)
        self.decoder = ConvDecoder(config.channels, config.widths, config.latent_channels)
        self.head = SegmentationHead(config.channels * 2, config.head_width)
        # smoothing the per-pixel probabilities ranks pixels near a detection above far-away ones,
        # which is what pixel-level metrics and region extraction both want
        self.register_buffer("smooth_kernel", gaussian_kernel(config.map_smoothing_sigma, 1), persistent=False)
        # Where the head is silent (probability ~0 on most pixels) the reconstruction error still ranks
        # pixels, and catches defects unlike any synthetic one; weighted low so the head decides.
        self.error_map = ErrorMap(config.channels, smooth_sigma=config.map_smoothing_sigma)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        reconstruction = self.decoder(self.encoder(x))
        logits = self.head(torch.cat([x, reconstruction], dim=1))
        anomaly_map = gaussian_blur(torch.sigmoid(logits), self.smooth_kernel)
        anomaly_map = anomaly_map + self.config.error_map_weight * self.error_map(x, reconstruction)
        return ModelOutput(reconstruction, anomaly_map, segmentation_logits=logits)
