"""Feature-reconstruction convolutional autoencoder (after DFR) on a frozen pretrained backbone.

Features of several backbone stages are brought to the finest tapped resolution, averaged over a
small neighbourhood (so one location describes a patch, not a pixel) and standardised per channel
with statistics of the normal training images. A convolutional autoencoder with a narrow bottleneck
learns to reproduce them; where it cannot, the squared error is the anomaly map.

The bottleneck is spatial (stride 2): each location is rebuilt from a code of its neighbourhood, so
a patch that does not fit its surroundings cannot be copied through. Without it (bottleneck_stride 1)
the autoencoder learns something close to the identity on textures and misses defects there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.models.blocks import conv_block, up_block
from training.models.feature_cae.memory import greedy_coreset, leave_one_image_out, squared_distance_to_nearest
from training.models.feature_space.model import (
    FeatureSpaceAutoencoder,
    FeatureSpaceConfig,
    ImageRestorer,
    upsample_to,
)


@dataclass(frozen=True)
class FeatureCAEConfig(FeatureSpaceConfig):
    """The shared feature-space fields, plus the neighbourhood and the autoencoder widths."""

    neighbourhood: int = 3
    hidden_channels: int = 128
    latent_channels: int = 64
    bottleneck_stride: int = 2
    # kernel of the outermost convolutions (features in, features out): 1 costs about a third of 3 and leaves the
    # neighbourhood to the stride-2 code
    outer_kernel: int = 1
    # codes kept in the memory of normal codes (0: the map is the reconstruction distance alone); training fills it
    # and the selection on validation defects keeps it or not (training/models/feature_cae/memory.py)
    code_memory: int = 16384

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be an odd number >= 1, got {self.neighbourhood}")
        if not 1 <= self.latent_channels <= self.hidden_channels:
            raise ValueError(f"latent_channels must be in [1, hidden_channels], got {self.latent_channels}")
        if self.bottleneck_stride not in (1, 2, 4):
            raise ValueError(f"bottleneck_stride must be 1, 2 or 4, got {self.bottleneck_stride}")
        if self.outer_kernel not in (1, 3):
            raise ValueError(f"outer_kernel must be 1 or 3, got {self.outer_kernel}")
        if self.code_memory < 0:
            raise ValueError(f"code_memory must be >= 0, got {self.code_memory}")


# the maps a fitted feature-cae can score by (FeatureSpaceAutoencoder.scoring_options)
RECONSTRUCTION = "reconstruction"
WITH_MEMORY = "reconstruction + code memory"
# The memory term's weights a run tries. Its scale makes the two terms average the same on normal images, which says
# nothing of which term finds defects better; the validation defects say that (magnetic tile's chose 2: test image
# AUROC 0.940 at 1, 0.954 at 2; bench/map_terms.py).
MEMORY_WEIGHTS = (1.0, 2.0, 4.0)


def memory_scoring(weight: float) -> str:
    """The name of the map with the memory term weighted `weight` (1: WITH_MEMORY, the name models carry since the
    memory came)."""
    return WITH_MEMORY if weight == 1.0 else f"reconstruction + {weight:g} x code memory"


class FeatureCAE(FeatureSpaceAutoencoder):
    """Backbone -> merged, standardised features -> convolutional autoencoder -> squared error."""

    def __init__(self, config: FeatureCAEConfig) -> None:
        super().__init__(config)
        self.config = config
        width = sum(self.backbone.out_channels)
        self.register_buffer("feature_mean", torch.zeros(1, width, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, width, 1, 1))
        hidden, latent = config.hidden_channels, config.latent_channels
        if config.bottleneck_stride in (2, 4):
            # 3x3 convolutions around a stride-2 (or 4) code: a location is rebuilt from its neighbourhood's code
            k = config.outer_kernel
            first = conv_block(width, hidden) if k == 3 else conv_block_1x1(width, hidden)
            # stride 4: a coarser code, so that a patch consistent with its close neighbours but not with the wider
            # surface (uneven or cracked tiles) is harder to rebuild (magnetic tile +0.03 image AUROC, bench/
            # feature_variants.py; measured on that set only, so not the default)
            coarse = config.bottleneck_stride == 4
            down = [conv_block(hidden, hidden, stride=2)] if coarse else []
            up = [up_block(hidden, hidden)] if coarse else []
            self.encoder = nn.Sequential(first, *down, conv_block(hidden, latent, stride=2))
            self.decoder = nn.Sequential(up_block(latent, hidden), *up, nn.Conv2d(hidden, width, k, padding=k // 2))
        else:
            self.encoder = nn.Sequential(conv_block_1x1(width, hidden), conv_block(hidden, latent))
            self.decoder = nn.Sequential(conv_block(latent, hidden), nn.Conv2d(hidden, width, 1))
        self.restorer = ImageRestorer(width, config.channels, min(config.feature_strides), config.restorer_widths)
        # The memory of normal codes and the per-location scale of its distance term; filled by fit_scoring.
        cells = config.image_size // min(config.feature_strides)
        self.register_buffer("memory", torch.zeros(config.code_memory, latent))
        self.register_buffer("memory_scale", torch.ones(1, 1, cells, cells))
        self.memory_in_map = config.code_memory > 0
        # the memory term's weight while a selection tries the options; the chosen one is folded into memory_scale
        self.memory_weight = 1.0
        # the memory's codes are the code averaged onto the stride-32 grid (7 x 7 at 224 px) whatever the bottleneck's
        # stride: magnetic tile 0.97 image AUROC from a memory of them, and a few megabytes for hundreds of images
        self.memory_pool = max(1, 4 // config.bottleneck_stride)

    def merge(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Scales resized to the finest, concatenated, neighbourhood-averaged (not yet standardised)."""
        size = features[0].shape[-1]
        merged = torch.cat([f if f.shape[-1] == size else upsample_to(f, size) for f in features], dim=1)
        k = self.config.neighbourhood
        if k > 1:
            # Zero padding counted in the average: with count_include_pad=False the outer ring averaged
            # fewer, different neighbours than the interior, scored far from every normal patch, and
            # the image maximum landed on that ring for almost every frame (the score measured the border).
            merged = F.avg_pool2d(merged, k, stride=1, padding=k // 2, count_include_pad=True)
        return merged

    @torch.no_grad()
    def fit_statistics(self, features: list[torch.Tensor]) -> None:
        merged = self.merge(features)
        self.feature_mean.copy_(merged.mean(dim=(0, 2, 3), keepdim=True))
        self.feature_std.copy_(merged.std(dim=(0, 2, 3), keepdim=True) + 1e-4)

    def reconstruct(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        distance, rebuilt, _ = self.reconstruct_with_code(features)
        return distance, rebuilt

    def standardised(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The merged features in units of the normal training images' per-channel spread: what the encoder reads."""
        return (self.merge(features) - self.feature_mean) / self.feature_std

    def reconstruct_with_code(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction distance N x 1 x h x w, rebuilt features, the memory's code N x latent x h/4 x w/4)."""
        target = self.standardised(features)
        code = self.encoder(target)
        rebuilt = self.decoder(code)
        distance = ((rebuilt - target) ** 2).mean(dim=1, keepdim=True)
        return distance, rebuilt, F.avg_pool2d(code, self.memory_pool) if self.memory_pool > 1 else code

    def memory_distance(self, code: torch.Tensor) -> torch.Tensor:
        """Each code cell's squared distance to the nearest code in the memory, on the map's grid (N x 1 x h x w)."""
        n, width, rows, cols = code.shape
        flat = code.permute(0, 2, 3, 1).reshape(n * rows * cols, width)
        nearest = squared_distance_to_nearest(flat, self.memory).reshape(n, 1, rows, cols)
        return upsample_to(nearest, self.memory_scale.shape[-1])

    def scoring_terms(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction term, memory term) on the map's grid, each scaled per location as the map scales it, the
        memory term at weight 1."""
        distance, _, code = self.reconstruct_with_code(features)
        return distance * self.location_scale, self.memory_distance(code) * self.memory_scale

    def maps_by_scoring(self, features: list[torch.Tensor], size: int) -> dict[str, torch.Tensor]:
        """Every option's map from one pass: the options differ only in the memory term's weight, and the smoothing is
        linear, so each map is the smoothed reconstruction term plus the weighted smoothed memory term."""
        if not len(self.memory):
            return super().maps_by_scoring(features, size)
        reconstruction, memory = (self.smooth_to(term, size) for term in self.scoring_terms(features))
        weighted = {memory_scoring(weight): reconstruction + weight * memory for weight in MEMORY_WEIGHTS}
        return {RECONSTRUCTION: reconstruction, **weighted}

    def scored_distance(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction distance, plus (memory in the map) the distance of the code to the nearest normal one;
        each scaled per location so that normal images average the same everywhere and the two weigh the same."""
        distance, rebuilt, code = self.reconstruct_with_code(features)
        distance = distance * self.location_scale
        if self.memory_in_map:
            distance = distance + self.memory_distance(code) * (self.memory_scale * self.memory_weight)
        return distance, rebuilt

    @torch.no_grad()
    def fit_scoring(self, features: list[torch.Tensor], batch: int = 32) -> None:
        """In one pass over the training features: the reconstruction term's per-location scale, then the memory (the
        images' codes, farthest-first down to `code_memory`) and its term's scale, from each image's distances to the
        other images' codes, in the reconstruction term's units."""
        self.eval()
        n = len(features[0])
        total, parts = torch.zeros_like(self.location_scale), []
        for start in range(0, n, batch):
            distance, _, code = self.reconstruct_with_code([f[start : start + batch] for f in features])
            total += distance.sum(dim=0, keepdim=True)
            parts.append(code)
        reconstruction_mean = total / n
        self.scale_locations(reconstruction_mean)
        if self.config.code_memory == 0:
            return
        codes = torch.cat(parts)
        _, width, rows, cols = codes.shape
        flat = codes.permute(0, 2, 3, 1).reshape(-1, width)
        owners = torch.arange(n).repeat_interleave(rows * cols)
        kept = greedy_coreset(flat, self.config.code_memory)
        self.memory = flat[kept].clone()
        apart = leave_one_image_out(flat, owners, self.memory, owners[kept]).reshape(n, 1, rows, cols)
        code_mean = upsample_to(apart, self.memory_scale.shape[-1]).mean(dim=0, keepdim=True)
        # the scaled reconstruction term averages the overall mean at every location; the memory term is brought to it
        overall = reconstruction_mean.mean()
        self.memory_scale.copy_(overall / code_mean.clamp_min(code_mean.mean() * 1e-3))

    def scoring_options(self) -> tuple[str, ...]:
        weighted = tuple(memory_scoring(weight) for weight in MEMORY_WEIGHTS) if len(self.memory) else ()
        return (RECONSTRUCTION, *weighted)

    def use_scoring(self, option: str) -> None:
        super().use_scoring(option)
        self.memory_in_map = option != RECONSTRUCTION
        self.memory_weight = next((w for w in MEMORY_WEIGHTS if memory_scoring(w) == option), 1.0)

    def discard_unused_scoring(self) -> None:
        """Empty the memory when the map does not use it, so the exported graph and checkpoint do not carry it; where
        it does, fold the chosen weight into the term's scale, so that the checkpoint rebuilds the same map."""
        if not self.memory_in_map:
            self.memory = self.memory[:0].clone()
        self.memory_scale.mul_(self.memory_weight)
        self.memory_weight = 1.0

    def shape_fields(self) -> dict[str, int]:
        return {"bottleneck_stride": self.config.bottleneck_stride, "code_memory": len(self.memory)}


def conv_block_1x1(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())
