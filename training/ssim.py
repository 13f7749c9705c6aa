"""Structural similarity in torch, exportable to ONNX (plain convolutions, no data-dependent control flow)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, channels: int) -> torch.Tensor:
    """Depthwise 1-D Gaussian kernel (channels x 1 x 1 x k) with radius 3 sigma, applied along each axis in turn."""
    radius = max(1, round(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    weights = torch.exp(-(coords**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    return weights.expand(channels, 1, 1, len(weights)).contiguous()


def gaussian_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise blur with reflect padding so borders are not darkened.

    Separable (rows, then columns): the same result as the 2-D kernel at 2k instead of k^2 multiplications per
    pixel; at 224 px with sigma 4 the 2-D form was a tenth of the scoring graph's time.
    """
    pad = kernel.shape[-1] // 2
    rows = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), kernel, groups=x.shape[1])
    return F.conv2d(F.pad(rows, (0, 0, pad, pad), mode="reflect"), kernel.transpose(-1, -2), groups=x.shape[1])


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
