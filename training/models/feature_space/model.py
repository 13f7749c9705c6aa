"""What the autoencoders in a frozen backbone's feature space share: the backbone front end, the
image restorer and the forward pass that turns a feature distance into the line's anomaly map."""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.backbone import FrozenBackbone
from training.models.blocks import ModelOutput, conv_block, up_block
from training.ssim import gaussian_kernel


@dataclass(frozen=True)
class FeatureSpaceConfig:
    """What every feature-space model's config has: input, backbone taps, restorer and map smoothing."""

    channels: int = 3
    image_size: int = 224
    backbone: str = "efficientnet-lite0"
    # adding the stride-4 stage found the synthetic defects no better on either shared set (reverse
    # distillation) and costs three times more
    feature_strides: tuple[int, ...] = (8, 16)
    restorer_widths: tuple[int, ...] = (64, 32, 16, 8)
    contrast_normalize: bool = False
    map_smoothing_sigma: float = 4.0
    # scale the distance map per location so that normal images' mean distance is the same everywhere
    location_scale: bool = True

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")
        if self.map_smoothing_sigma <= 0:
            raise ValueError(f"map_smoothing_sigma must be > 0, got {self.map_smoothing_sigma}")


class ContrastNormalize(nn.Module):
    """Per-image standardisation into the range of natural photographs.

    Line images are often dark and low in contrast (the backbone saw ImageNet photographs), and the
    lighting drifts over a shift; standardising each frame keeps the features about texture, not
    exposure. Clamped so that a bright glint cannot dominate.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        std = image.std(dim=(1, 2, 3), keepdim=True)
        return ((image - mean) / (std + 1e-3) * 0.22 + 0.45).clamp(0.0, 1.0)


class ImageRestorer(nn.Module):
    """Decoder from (reconstructed) features back to the image: the model's restored frame.

    It is trained on features of corrupted normal images to give the clean image, so on the line it
    shows what the part should look like; the anomaly map never depends on it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        steps = int(math.log2(stride))
        if 2**steps != stride or steps < 1:
            raise ValueError(f"restorer stride must be a power of two >= 2, got {stride}")
        per_step = [widths[min(i, len(widths) - 1)] for i in range(steps + 1)]
        layers: list[nn.Module] = [conv_block(in_channels, per_step[0])]
        for previous, width in itertools.pairwise(per_step):
            layers.append(up_block(previous, width))
        layers += [nn.Conv2d(per_step[-1], out_channels, 3, padding=1), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def upsample_to(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def smoothing_matrix(cells: int, size: int, kernel: torch.Tensor) -> torch.Tensor:
    """The size x cells matrix S with S @ d @ S.T == gaussian_blur(upsample_to(d, size), kernel) for a cells x cells
    map d. Bilinear upsampling and the reflect-padded Gaussian are each linear and act on rows and columns alike, so
    the two are one matrix per axis: built here by passing each one-hot row of `cells` through both.

    Two matrix products instead of the upsampling and two 25-tap convolutions over the full-size map: the map's
    tail took about 1 ms a frame in onnxruntime at 224 px, a fifth of an int8 file's time, and takes 0.2 ms."""
    one_hot = torch.eye(cells, dtype=kernel.dtype, device=kernel.device)[:, None, None, :]
    wide = F.interpolate(one_hot, size=(1, size), mode="bilinear", align_corners=False)
    pad = kernel.shape[-1] // 2
    blurred = F.conv2d(F.pad(wide, (pad, pad, 0, 0), mode="reflect"), kernel[:1])
    return blurred[:, 0, 0, :].t().contiguous()


class FeatureSpaceAutoencoder(nn.Module):
    """Base of the feature-space models: backbone -> (model) -> distance map + restored image.

    Subclasses implement `fit_statistics`, `feature_loss` and `reconstruct`; training works on the
    cached output of `extract`, so the backbone runs once per training image, not once per epoch.
    """

    restorer: ImageRestorer

    def __init__(self, config: FeatureSpaceConfig) -> None:
        super().__init__()
        self.contrast = ContrastNormalize() if config.contrast_normalize else nn.Identity()
        self.backbone = FrozenBackbone(config.backbone, config.feature_strides, config.image_size, config.channels)
        self.register_buffer("smooth_kernel", gaussian_kernel(config.map_smoothing_sigma, 1), persistent=False)
        cells = config.image_size // min(config.feature_strides)
        self.register_buffer(
            "smoothing", smoothing_matrix(cells, config.image_size, self.smooth_kernel), persistent=False
        )
        # Per-location scale of the distance map (1 until fit_scoring): padding in the convolutions and the
        # frame's own edges give the outer ring distances that normal images have too; scaled so that normal
        # images' mean distance is the same everywhere, no location scores its own artefacts.
        self.register_buffer("location_scale", torch.ones(1, 1, cells, cells))
        self.scales_locations = config.location_scale

    @torch.no_grad()
    def extract(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features of a batch of images in [0, 1], one map per tapped stride."""
        return self.backbone(self.contrast(image))

    @abstractmethod
    def fit_statistics(self, features: list[torch.Tensor]) -> None:
        """Set whatever the model derives from the normal features before training (e.g. scaling)."""

    @abstractmethod
    def reconstruct(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance map N x 1 x h x w, input of the restorer) for a batch of backbone features."""

    def feature_loss(self, features: list[torch.Tensor]) -> torch.Tensor:
        distance, _ = self.reconstruct(features)
        return distance.mean()

    @torch.no_grad()
    def fit_scoring(self, features: list[torch.Tensor]) -> None:
        """What the map derives from the normal training features once the model is fitted: the per-location scale
        (where the model's config asks for it; models with more to fit extend this)."""
        self.scale_locations(self.mean_distance(features) if self.scales_locations else None)

    @torch.no_grad()
    def scale_locations(self, mean: torch.Tensor | None) -> None:
        """Scale each location by (mean distance over all locations) / (its mean distance on normal images, `mean`),
        where the model's config asks for it; 1 everywhere otherwise."""
        self.location_scale.fill_(1.0)
        if self.scales_locations and mean is not None:
            self.location_scale.copy_(mean.mean() / mean.clamp_min(mean.mean() * 1e-3))

    @torch.no_grad()
    def mean_distance(self, features: list[torch.Tensor], batch: int = 32) -> torch.Tensor:
        """Mean reconstruction distance per map location (1 x 1 x h x w) over a set of images' features."""
        self.eval()
        n = len(features[0])
        total = torch.zeros_like(self.location_scale)
        for start in range(0, n, batch):
            distance, _ = self.reconstruct([f[start : start + batch] for f in features])
            total += distance.sum(dim=0, keepdim=True)
        return total / n

    def scored_distance(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance map N x 1 x h x w as the line scores it, input of the restorer): the reconstruction distance,
        scaled per location."""
        distance, restorer_input = self.reconstruct(features)
        return distance * self.location_scale, restorer_input

    def scoring_options(self) -> tuple[str, ...]:
        """The ways this fitted model can score, for the selection on validation defects to choose between (by
        default one: the model's own feature distance)."""
        return ("distance",)

    def use_scoring(self, option: str) -> None:
        """Score the map as `option` (one of scoring_options) from now on."""
        if option not in self.scoring_options():
            raise ValueError(f"unknown scoring {option!r}; this model offers {', '.join(self.scoring_options())}")

    def discard_unused_scoring(self) -> None:
        """Drop what the chosen scoring does not read (nothing by default)."""

    def shape_fields(self) -> dict[str, int]:
        """Config fields the fitted model's shape depends on beyond the run's config (recorded with the selection, so
        that the model rebuilds from its metadata)."""
        return {}

    def forward(self, image: torch.Tensor) -> ModelOutput:
        anomaly_map, restorer_input = self.map_and_restorer_input(image)
        return ModelOutput(self.restorer(restorer_input), anomaly_map)

    def anomaly_map(self, image: torch.Tensor) -> torch.Tensor:
        """The map alone, as `forward` computes it, without running the restorer (choosing among candidates)."""
        return self.map_and_restorer_input(image)[0]

    def map_and_restorer_input(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.map_from_features(self.backbone(self.contrast(image)), image.shape[-1])

    def map_from_features(self, features: list[torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(anomaly map N x 1 x size x size, restorer input) from backbone features: what the graph computes after the
        backbone, so that a selection can score cached features as the exported graph scores frames."""
        distance, restorer_input = self.scored_distance(features)
        return self.smooth_to(distance, size), restorer_input

    def maps_by_scoring(self, features: list[torch.Tensor], size: int) -> dict[str, torch.Tensor]:
        """The full-size map under each of scoring_options, for a selection to compare (by default each option's
        map_from_features in turn; models whose options share their terms compute them once). Leaves the model
        scoring by the last option."""
        maps = {}
        for option in self.scoring_options():
            self.use_scoring(option)
            maps[option] = self.map_from_features(features, size)[0]
        return maps

    def smooth_to(self, distance: torch.Tensor, size: int) -> torch.Tensor:
        """The distance on the model's grid (N x 1 x h x w) as the full-size map: upsampled and Gaussian-smoothed, as
        two matrix products (smoothing_matrix)."""
        cells = distance.shape[-1]
        same = self.smoothing.shape == (size, cells)
        matrix = self.smoothing if same else smoothing_matrix(cells, size, self.smooth_kernel)
        return matrix @ distance @ matrix.t()

    def trainable_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(feature-model parameters, restorer parameters): trained one after the other."""
        restorer = set(map(id, self.restorer.parameters()))
        model = [p for p in self.parameters() if p.requires_grad and id(p) not in restorer]
        return model, list(self.restorer.parameters())
