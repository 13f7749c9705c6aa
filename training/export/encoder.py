"""Encoder-only ONNX of a trained model, for embeddings (clustering, classifiers) and latent interpolation.

Input `image` N x C x S x S in [0, 1] (plus `condition` N int64 for conditional models); outputs `embedding`
N x 2D (mean and max of the code over its locations: the mean says what the patch looks like overall, the max
keeps a small defect that one location sees) and `latent` N x (D*h*w), the flattened spatial code that the
decoder ONNX of a variational model takes back. For variational models the code is the posterior mean.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME, ModelMetadata
from pipeline.latent.contract import EMBEDDING_OUTPUT_NAME, ENCODER_KIND, LATENT_OUTPUT_NAME, POOLING
from training.export.contract import parity_check, save_onnx
from training.export.decoder import decoder_props
from training.models.cvae import ConditionalVAE, broadcast
from training.models.feature_cae import FeatureCAE
from training.models.feature_space import FeatureSpaceAutoencoder
from training.models.reverse_distillation import ReverseDistillation
from training.models.vae import ConvVAE

ENCODER_OUTPUTS = (EMBEDDING_OUTPUT_NAME, LATENT_OUTPUT_NAME)


def latent_code(model: nn.Module, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
    """The model's bottleneck for a batch, N x D x h x w (variational models: the posterior mean)."""
    if isinstance(model, ConditionalVAE):
        embedding = model.embedding(model.conditions_or_unknown(condition, image))
        return model.encoder(torch.cat([image, broadcast(embedding, image)], 1)).chunk(2, dim=1)[0]
    if isinstance(model, ConvVAE):
        return model.encoder(image).chunk(2, dim=1)[0]
    if isinstance(model, FeatureCAE):
        features = model.backbone(model.contrast(image))
        return model.encoder((model.merge(features) - model.feature_mean) / model.feature_std)
    if isinstance(model, ReverseDistillation):
        return model.bottleneck(model.backbone(model.contrast(image)))
    if hasattr(model, "encode_to"):  # stacked-ae: its encoder is the stack of layer-wise trained encoders
        return model.encode_to(image, len(model.encoders))
    if isinstance(model, FeatureSpaceAutoencoder) or not isinstance(getattr(model, "encoder", None), nn.Module):
        raise ValueError(f"{type(model).__name__} has no encoder to export")
    return model.encoder(image)


class EncoderGraph(nn.Module):
    """Image (and condition) -> (pooled embedding, flattened spatial code)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        code = latent_code(self.model, image, condition)
        embedding = torch.cat([code.mean(dim=(2, 3)), code.amax(dim=(2, 3))], dim=1)
        return embedding, code.flatten(1)


def encoder_props(metadata: ModelMetadata, code_shape: tuple[int, int, int]) -> dict[str, str]:
    """The decoder's properties (sizes, latent shape, vocabulary) plus what `pipeline.latent` needs to embed frames
    as the model saw them in training."""
    return decoder_props(metadata, code_shape) | {
        "kind": ENCODER_KIND,
        "resize_mode": metadata.resize_mode,
        "normalization": metadata.normalization,
        "pooling": POOLING,
        "embedding_size": str(2 * code_shape[0]),
    }


def export_encoder(model: nn.Module, metadata: ModelMetadata, out: Path) -> float:
    """Write the encoder of `model` to `out` with its metadata; returns the parity check's max abs difference."""
    graph = EncoderGraph(model.eval().cpu()).eval()
    spec = metadata.input_spec
    image = torch.rand(2, spec.channels, spec.size, spec.size)
    conditional = metadata.condition is not None
    example = (image, torch.tensor([0, 1])) if conditional else image
    names = (INPUT_NAME, CONDITION_INPUT_NAME) if conditional else INPUT_NAME
    with torch.no_grad():
        code_shape = tuple(latent_code(graph.model, image, example[1] if conditional else None).shape[1:])
    props = encoder_props(metadata, code_shape)  # type: ignore[arg-type]
    save_onnx(graph, example, names, props, out, output_names=ENCODER_OUTPUTS)
    return parity_check(graph, out, output_names=ENCODER_OUTPUTS)
