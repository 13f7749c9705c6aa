"""Conditional VAE: a learned embedding of the condition (camera, variant) enters both encoder and decoder.

Index 0 is "unknown": condition dropout trains it as the unconditional path, which is where the runtime sends
every value outside the vocabulary (docs/models/cvae.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.models.blocks import ConvDecoder, ConvEncoder, ErrorMap, ModelOutput, reparameterise, variational_output
from training.models.vae.model import VAEConfig


@dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    """The VAE's fields plus the condition vocabulary size (values + 1 for "unknown"), embedding size and dropout."""

    num_conditions: int = 2
    condition_dim: int = 8
    condition_dropout: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_conditions < 1:
            raise ValueError(f"num_conditions must be >= 1 (index 0 is 'unknown'), got {self.num_conditions}")
        if self.condition_dim < 1:
            raise ValueError(f"condition_dim must be >= 1, got {self.condition_dim}")
        if not 0 <= self.condition_dropout < 1:
            raise ValueError(f"condition_dropout must be in [0, 1), got {self.condition_dropout}")


def broadcast(embedding: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """N x E embedding as N x E x H x W planes matching `like`'s spatial size."""
    return embedding[:, :, None, None].expand(-1, -1, like.shape[-2], like.shape[-1])


class ConditionalVAE(nn.Module):
    """VAE whose encoder sees the image plus condition planes and whose decoder sees the latent plus condition."""

    conditional = True

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.num_conditions, config.condition_dim)
        self.encoder = ConvEncoder(
            config.channels + config.condition_dim, config.widths, config.latent_channels * 2, dropout=0.0
        )
        self.decoder = ConvDecoder(config.channels, config.widths, config.latent_channels + config.condition_dim)
        self.error_map = ErrorMap(config.channels)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> ModelOutput:
        condition = self.drop_conditions(self.conditions_or_unknown(condition, x))
        embedding = self.embedding(condition)
        mean, log_var, latent = reparameterise(self.encoder(torch.cat([x, broadcast(embedding, x)], 1)), self.training)
        reconstruction = self.decoder(torch.cat([latent, broadcast(embedding, latent)], 1))
        config = self.config
        return variational_output(x, reconstruction, mean, log_var, self.error_map, config.score, config.kl_map_weight)

    def decode(self, latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Images of the given conditions from latents N x latent_channels x h x w (conditional generation)."""
        return self.decoder(torch.cat([latent, broadcast(self.embedding(condition), latent)], 1))

    @staticmethod
    def conditions_or_unknown(condition: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        if condition is None:
            return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return condition.long()

    def drop_conditions(self, condition: torch.Tensor) -> torch.Tensor:
        """In training, replace a random share of conditions by 0 so index 0 learns the unconditional path."""
        if not self.training or self.config.condition_dropout == 0:
            return condition
        dropped = torch.rand(condition.shape, device=condition.device) < self.config.condition_dropout
        return condition.masked_fill(dropped, 0)
