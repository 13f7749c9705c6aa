"""Structural similarity in torch, exportable to ONNX (plain convolutions, no data-dependent control flow)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, channels: int) -> torch.Tensor:
    """Depthwise 2-D Gaussian kernel (channels x 1 x k x k) with radius 3 sigma."""
    radius = max(1, round(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    weights = torch.exp(-(coords**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    kernel = weights[:, None] * weights[None, :]
    return kernel.expand(channels, 1, *kernel.shape).contiguous()


def gaussian_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise blur with reflect padding so borders are not darkened."""
    pad = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, groups=x.shape[1])


def ssim_map(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (N x C x H x W) of images in [0, 1], Gaussian window given by `kernel`."""
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = gaussian_blur(x, kernel), gaussian_blur(y, kernel)
    var_x = gaussian_blur(x * x, kernel) - mu_x * mu_x
    var_y = gaussian_blur(y * y, kernel) - mu_y * mu_y
    cov = gaussian_blur(x * y, kernel) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator
