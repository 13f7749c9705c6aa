"""The ONNX contract: fixed input/output names, dynamic batch, pinned opset, metadata, parity check.

The scoring graph itself (model outputs plus the image score) is training.models.scoring.ScoringGraph.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from training.errors import ExportParityError
from training.export.metadata import write_props
from training.models.scoring import ScoringGraph

OPSET = 17
PARITY_TOLERANCE = 1e-3


def export_onnx(graph: ScoringGraph, metadata: ModelMetadata, out: Path) -> float:
    """Write the model to `out` with metadata embedded; returns the parity check's max abs difference."""
    graph = graph.eval().cpu()
    spec = metadata.input_spec
    image = torch.rand(2, spec.channels, spec.size, spec.size)
    if metadata.condition is None:
        save_onnx(graph, image, INPUT_NAME, metadata, out)
    else:  # conditional models: second input, one int64 condition index per frame (pipeline.contract)
        example = (image, example_conditions(metadata, len(image)))
        save_onnx(graph, example, (INPUT_NAME, CONDITION_INPUT_NAME), metadata, out)
    return parity_check(graph, out, batch=3)


def example_conditions(metadata: ModelMetadata, count: int) -> torch.Tensor:
    """`count` condition indices the model knows, for tracing: 0 (unknown), 1, ... in turn, within the vocabulary
    (a folder without condition subfolders has index 0 alone)."""
    assert metadata.condition is not None
    return torch.arange(count) % (len(metadata.condition.values) + 1)


def save_onnx(
    graph: torch.nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    input_name: str | tuple[str, ...],
    metadata: ModelMetadata | dict[str, str],
    out: Path,
    output_names: tuple[str, ...] = OUTPUT_NAMES,
) -> None:
    """Trace `graph` on `example` into an ONNX file at `out` (dynamic batch), with the contract's metadata (or the
    properties of a file that is not a scoring model: encoder, decoder)."""
    examples = example if isinstance(example, tuple) else (example,)
    input_names = [input_name] if isinstance(input_name, str) else list(input_name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript and is
        # slower; these graphs are plain convolutions, which the classic exporter handles exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            examples,
            buffer,
            input_names=input_names,
            output_names=list(output_names),
            dynamic_axes={name: {0: "batch"} for name in (*input_names, *output_names)},
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    write_props(proto, metadata.to_props() if isinstance(metadata, ModelMetadata) else metadata)
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))


def parity_check(
    graph: nn.Module, path: Path, batch: int = 3, seed: int = 0, output_names: tuple[str, ...] = OUTPUT_NAMES
) -> float:
    """Run torch and onnxruntime on the same random batch; raise if any output differs beyond tolerance.

    `graph` wraps the model as `graph.model` (the scoring graph, or the encoder's: training.export.encoder)."""
    spec_input = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = spec_input.get_inputs()[0].shape
    channels, height, width = (int(d) for d in shape[1:])
    x = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))
    inputs = (x,)
    if len(spec_input.get_inputs()) == 2:  # every condition index in turn, 0 (unknown) included
        inputs = (x, torch.arange(batch) % graph.model.config.num_conditions)
    with torch.no_grad():
        expected = [t.numpy() for t in graph.eval()(*inputs)]
    feed = dict(zip((INPUT_NAME, CONDITION_INPUT_NAME), (t.numpy() for t in inputs), strict=False))
    actual = spec_input.run(list(output_names), feed)
    worst = 0.0
    for name, want, got in zip(output_names, expected, actual, strict=True):
        diff = float(np.max(np.abs(want - got)))
        if diff > PARITY_TOLERANCE:
            raise ExportParityError(name, diff, PARITY_TOLERANCE)
        worst = max(worst, diff)
    return worst
