"""Tiny real encoder and decoder ONNX files for the latent-space tests, built with onnx.helper (no torch).

Encoder: 32 x 32 gray input, 8 x 8 average pooling gives a 4 x 4 code; embedding = (mean, max) of the code,
latent = the code flattened (16). Decoder: 16 latents -> 4 x 4 -> nearest upsampling to 32 x 32 -> sigmoid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME
from pipeline.latent.contract import (
    DECODER_KIND,
    EMBEDDING_OUTPUT_NAME,
    ENCODER_KIND,
    IMAGE_OUTPUT_NAME,
    LATENT_INPUT_NAME,
    LATENT_OUTPUT_NAME,
    POOLING,
)

SIZE = 32
LATENT = 16


def _props(kind: str, conditions: tuple[str, ...]) -> dict[str, str]:
    props = {
        "kind": kind,
        "model_name": "tiny-latent",
        "model_version": "1",
        "architecture": "avgpool",
        "input_size": str(SIZE),
        "input_channels": "1",
        "resize_mode": "stretch",
        "normalization": "x/255",
        "pooling": POOLING,
        "latent_size": str(LATENT),
        "latent_shape": json.dumps([1, 4, 4]),
    }
    if kind == ENCODER_KIND:
        props["embedding_size"] = "2"
    if conditions:
        props["condition"] = json.dumps({"source": "camera-id", "values": list(conditions)})
    return props


def _save(graph: onnx.GraphProto, props: dict[str, str], path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the pinned onnxruntime reads
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_encoder(path: Path) -> Path:
    nodes = [
        helper.make_node("AveragePool", [INPUT_NAME], ["code"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("GlobalAveragePool", ["code"], ["mean4"]),
        helper.make_node("GlobalMaxPool", ["code"], ["max4"]),
        helper.make_node("Concat", ["mean4", "max4"], ["pooled"], axis=1),
        helper.make_node("Flatten", ["pooled"], [EMBEDDING_OUTPUT_NAME], axis=1),
        helper.make_node("Flatten", ["code"], [LATENT_OUTPUT_NAME], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-encoder",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [
            helper.make_tensor_value_info(EMBEDDING_OUTPUT_NAME, TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info(LATENT_OUTPUT_NAME, TensorProto.FLOAT, ["batch", LATENT]),
        ],
    )
    return _save(graph, _props(ENCODER_KIND, ()), path)


def build_decoder(path: Path, conditions: tuple[str, ...] = ()) -> Path:
    """A conditional decoder adds (condition index / 10) to every latent, so conditions give different images."""
    initializers = [
        helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 4, 4]),
        helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 8, 8]),
        helper.make_tensor("tenth", TensorProto.FLOAT, [], [0.1]),
    ]
    inputs = [helper.make_tensor_value_info(LATENT_INPUT_NAME, TensorProto.FLOAT, ["batch", LATENT])]
    nodes = []
    source = LATENT_INPUT_NAME
    if conditions:
        inputs.append(helper.make_tensor_value_info(CONDITION_INPUT_NAME, TensorProto.INT64, ["batch"]))
        nodes += [
            helper.make_node("Cast", [CONDITION_INPUT_NAME], ["condition_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["condition_f", "tenth"], ["shift1"]),
            helper.make_node("Unsqueeze", ["shift1", "axis1"], ["shift"]),
            helper.make_node("Add", [LATENT_INPUT_NAME, "shift"], ["shifted"]),
        ]
        initializers.append(helper.make_tensor("axis1", TensorProto.INT64, [1], [1]))
        source = "shifted"
    nodes += [
        helper.make_node("Reshape", [source, "shape"], ["code"]),
        helper.make_node("Resize", ["code", "", "scales"], ["big"], mode="nearest"),
        helper.make_node("Sigmoid", ["big"], [IMAGE_OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-decoder",
        inputs,
        [helper.make_tensor_value_info(IMAGE_OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        initializers,
    )
    return _save(graph, _props(DECODER_KIND, conditions), path)


def surface(kind: str, seed: int, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A gray frame with a defect at (40, 30, 16, 16): a dark pit ("pit") or a bright streak ("streak")."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(128, 4, shape), 0, 255).astype(np.uint8)
    value = 20 if kind == "pit" else 240
    image[30:46, 40:56] = np.clip(rng.normal(value, 4, (16, 16)), 0, 255).astype(np.uint8)
    return image
