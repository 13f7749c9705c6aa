"""Stacked autoencoder: a stack of (encoder layer, decoder layer) pairs that can be pretrained greedily, one pair at a
time (each pair learns to reconstruct the output of the layer below), before end-to-end fine-tuning
(pretraining.py beside it). The network itself is a plain convolutional autoencoder without skip connections."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.blocks import ErrorMap, ModelOutput, check_autoencoder_fields, conv_block, up_block


@dataclass(frozen=True)
class StackedAEConfig:
    """One layer pair per width (each halves the resolution), then a 1x1 bottleneck pair of `latent_channels`."""

    channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    latent_channels: int = 32

    def __post_init__(self) -> None:
        check_autoencoder_fields(self.channels, self.widths, self.latent_channels, dropout=0.0)


def decoder_layer(width: int, out_channels: int, is_image: bool) -> nn.Sequential:
    """Up one level: the first pair ends in the image (sigmoid), deeper pairs in ReLU features like their target."""
    if is_image:
        return nn.Sequential(up_block(width, width), nn.Conv2d(width, out_channels, 3, padding=1), nn.Sigmoid())
    return up_block(width, out_channels)


class StackedAE(nn.Module):
    """encoders[k] maps level k to level k + 1 and decoders[k] maps it back; forward runs the whole stack."""

    def __init__(self, config: StackedAEConfig) -> None:
        super().__init__()
        self.config = config
        levels = list(zip((config.channels, *config.widths[:-1]), config.widths, strict=True))
        self.encoders = nn.ModuleList(nn.Sequential(conv_block(i, w, stride=2), conv_block(w, w)) for i, w in levels)
        self.decoders = nn.ModuleList(decoder_layer(w, i, is_image=k == 0) for k, (i, w) in enumerate(levels))
        last = config.widths[-1]
        self.encoders.append(nn.Conv2d(last, config.latent_channels, 1))  # the bottleneck pair: no ReLU on the code
        self.decoders.append(conv_block(config.latent_channels, last))
        self.error_map = ErrorMap(config.channels)

    def encode_to(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """The input of layer pair `level`: x through encoders[:level]."""
        for encoder in self.encoders[:level]:
            x = encoder(x)
        return x

    def forward(self, x: torch.Tensor) -> ModelOutput:
        code = self.encode_to(x, len(self.encoders))
        for decoder in reversed(self.decoders):
            code = decoder(code)
        return ModelOutput(code, self.error_map(x, code))
