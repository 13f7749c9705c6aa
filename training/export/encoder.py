"""Encoder-only ONNX of a trained model, for embeddings (clustering, classifiers) and latent interpolation.

Input `image` N x C x S x S in [0, 1] (plus `condition` N int64 for conditional models); outputs `embedding`
N x 2D (mean and max of the code over its locations: the mean says what the patch looks like overall, the max
keeps a small defect that one location sees) and `latent` N x (D*h*w), the flattened spatial code that the
decoder ONNX of a variational model takes back. For variational models the code is the posterior mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME, ModelMetadata
from pipeline.latent.contract import EMBEDDING_OUTPUT_NAME, ENCODER_KIND, LATENT_OUTPUT_NAME, POOLING
from training.export.contract import example_conditions, parity_check, save_onnx
from training.export.decoder import decoder_props
from training.models import model_entry
from training.models.family import ImageFamily

ENCODER_OUTPUTS = (EMBEDDING_OUTPUT_NAME, LATENT_OUTPUT_NAME)


class EncoderGraph(nn.Module):
    """Image (and condition) -> (pooled embedding, flattened spatial code); the code is the family's latent hook
    (training.models.family.ImageFamily.latent_code)."""

    def __init__(self, model: nn.Module, family: ImageFamily[Any]) -> None:
        super().__init__()
        self.model = model
        self.family = family

    def code(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The model's bottleneck N x D x h x w."""
        return self.family.latent_code(self.model, image, condition)

    def forward(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.code(image, condition)
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
    """Write the encoder of `model` (registered as `metadata.architecture`) to `out` with its metadata; returns the
    parity check's max abs difference."""
    graph = EncoderGraph(model.eval().cpu(), model_entry(metadata.architecture).family).eval()
    spec = metadata.input_spec
    image = torch.rand(2, spec.channels, spec.size, spec.size)
    conditions = example_conditions(metadata, len(image)) if metadata.condition is not None else None
    example = image if conditions is None else (image, conditions)
    names = INPUT_NAME if conditions is None else (INPUT_NAME, CONDITION_INPUT_NAME)
    with torch.no_grad():
        code_shape = tuple(graph.code(image, conditions).shape[1:])
    props = encoder_props(metadata, code_shape)  # type: ignore[arg-type]
    save_onnx(graph, example, names, props, out, output_names=ENCODER_OUTPUTS)
    return parity_check(graph, out, output_names=ENCODER_OUTPUTS)
