"""Decoder-only ONNX of a variational model, for sampling new images: input `latent` N x D (+ `condition`), output
`image` N x C x S x S in [0, 1]. Beside the scoring file as `<model>.decoder.onnx`; docs/models/vae.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from pipeline.contract import CONDITION_INPUT_NAME, ModelMetadata
from pipeline.latent.contract import DECODER_KIND, IMAGE_OUTPUT_NAME, LATENT_INPUT_NAME, sibling
from training.errors import ExportParityError
from training.export.contract import PARITY_TOLERANCE, example_conditions, save_onnx
from training.models import model_entry
from training.models.family import ImageFamily

# not a scoring model (the line runtime refuses kind "decoder"); `lineguard generate` reads it (pipeline.latent)


def decoder_path(model_path: Path) -> Path:
    """Where `training.train` writes the decoder of a variational model: `<model>.decoder.onnx`."""
    return sibling(model_path, DECODER_KIND)


class DecoderGraph(nn.Module):
    """Flat latent N x D -> the model's spatial latent -> decoded image (conditional models take the condition too),
    through the family's decoder hook (training.models.family.ImageFamily.decode)."""

    def __init__(self, model: nn.Module, family: ImageFamily[Any], shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self.shape = shape

    def forward(self, latent: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        return self.family.decode(self.model, latent.reshape(-1, *self.shape), condition)


def decoder_props(metadata: ModelMetadata, shape: tuple[int, int, int]) -> dict[str, str]:
    """What a sampler needs: the latent size and shape, the image layout and (conditional models) the vocabulary."""
    props = {
        "kind": DECODER_KIND,
        "model_name": metadata.model_name,
        "model_version": metadata.model_version,
        "architecture": metadata.architecture,
        "input_size": str(metadata.input_size),
        "input_channels": str(metadata.input_channels),
        "latent_size": str(math.prod(shape)),
        "latent_shape": json.dumps(list(shape)),
        "created_at": metadata.created_at,
    }
    if metadata.condition is not None:
        condition = metadata.condition
        props["condition"] = json.dumps({"source": condition.source, "values": list(condition.values)})
    return props


def export_decoder(model: nn.Module, metadata: ModelMetadata, out: Path) -> float:
    """Write the decoder of `model` (registered as `metadata.architecture`, a family with `has_decoder`) to `out`;
    returns the parity check's max abs diff."""
    family = model_entry(metadata.architecture).family
    shape = family.latent_shape(model, metadata.input_size)
    graph = DecoderGraph(model.eval().cpu(), family, shape).eval()
    latent = torch.randn(2, math.prod(shape))
    if metadata.condition is None:
        names, example = [LATENT_INPUT_NAME], (latent,)
    else:
        names, example = [LATENT_INPUT_NAME, CONDITION_INPUT_NAME], (latent, example_conditions(metadata, len(latent)))
    save_onnx(graph, example, tuple(names), decoder_props(metadata, shape), out, output_names=(IMAGE_OUTPUT_NAME,))
    return _parity(graph, out, names, math.prod(shape))


def _parity(graph: DecoderGraph, path: Path, names: list[str], size: int, batch: int = 3) -> float:
    latent = torch.randn(batch, size, generator=torch.Generator().manual_seed(0))
    inputs: tuple[torch.Tensor, ...] = (latent,)
    if len(names) == 2:
        inputs = (latent, torch.arange(batch) % graph.model.config.num_conditions)
    with torch.no_grad():
        expected = graph(*inputs).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run([IMAGE_OUTPUT_NAME], {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    diff = float(np.max(np.abs(expected - actual)))
    if diff > PARITY_TOLERANCE:
        raise ExportParityError(IMAGE_OUTPUT_NAME, diff, PARITY_TOLERANCE)
    return diff
