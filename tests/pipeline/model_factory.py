"""A tiny but real LineGuard ONNX model for tests: blur reconstruction, abs-diff anomaly map, max score."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from pipeline.contract import (
    INPUT_NAME,
    SENSOR_INPUT_NAME,
    SENSOR_NORMALIZATION,
    SENSOR_RESIZE_MODE,
    ModelMetadata,
    ScoreStats,
    SensorSpec,
)

OPSET = 17


def tiny_metadata(
    size: int = 256, channels: int = 1, version: str = "1", image_threshold: float = 0.08, pixel_threshold: float = 0.05
) -> ModelMetadata:
    return ModelMetadata(
        model_name="tiny-blur",
        model_version=version,
        architecture="avgpool-blur",
        kind="image",
        input_size=size,
        input_channels=channels,
        resize_mode="stretch",
        image_threshold=image_threshold,
        pixel_threshold=pixel_threshold,
        image_score_stats=ScoreStats(n=10, mean=0.02, std=0.01, quantiles={"0.99": 0.05}),
        pixel_score_stats=ScoreStats(n=10, mean=0.005, std=0.005),
        train_data_digest="sha256:test",
        created_at="2026-11-28T00:00:00Z",
    )


def build_tiny_model(
    path: Path, metadata: ModelMetadata | None = None, kernel: int = 7, nan_below: float | None = None
) -> Path:
    """Write the model to `path`: a smooth image reconstructs almost exactly, sharp defects light up.

    `nan_below`: a broken model whose score is NaN for frames scoring below it (log of a negative number).
    """
    meta = metadata or tiny_metadata()
    c, s = meta.input_channels, meta.input_size
    pad = kernel // 2
    nodes = [
        helper.make_node(
            "AveragePool",
            [INPUT_NAME],
            ["reconstruction"],
            kernel_shape=[kernel, kernel],
            pads=[pad, pad, pad, pad],
            count_include_pad=0,
        ),
        helper.make_node("Sub", [INPUT_NAME, "reconstruction"], ["diff"]),
        helper.make_node("Abs", ["diff"], ["absdiff"]),
        helper.make_node("ReduceMean", ["absdiff"], ["anomaly_map"], axes=[1], keepdims=1),
        helper.make_node("ReduceMax", ["anomaly_map"], ["max_score"], axes=[1, 2, 3], keepdims=0),
    ]
    initializers = []
    if nan_below is None:
        nodes.append(helper.make_node("Identity", ["max_score"], ["score"]))
    else:
        initializers = [
            helper.make_tensor("nan_below", TensorProto.FLOAT, [], [nan_below]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        ]
        nodes += [
            helper.make_node("Sub", ["max_score", "nan_below"], ["margin"]),
            helper.make_node("Log", ["margin"], ["log_margin"]),  # NaN below the cut, finite above it
            helper.make_node("Mul", ["log_margin", "zero"], ["poison"]),
            helper.make_node("Add", ["max_score", "poison"], ["score"]),
        ]
    graph = helper.make_graph(
        nodes,
        "tiny_blur",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", c, s, s])],
        [
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["N", c, s, s]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, s, s]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        ],
        initializer=initializers,
    )
    return save_model(graph, meta, path)


def tiny_sensor_metadata(
    channels: tuple[str, ...] = ("a", "b", "c"),
    window_length: int = 16,
    window_stride: int = 8,
    window_threshold: float = 1.0,
    sample_threshold: float = 0.5,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    version: str = "1",
) -> ModelMetadata:
    spec = SensorSpec(
        channels=channels,
        window_length=window_length,
        window_stride=window_stride,
        channel_mean=mean or tuple(0.0 for _ in channels),
        channel_std=std or tuple(1.0 for _ in channels),
        sample_rate_hz=None,
    )
    return ModelMetadata(
        model_name="tiny-sensor",
        model_version=version,
        architecture="moving-average",
        kind="sensor",
        input_size=window_length,
        input_channels=len(channels),
        resize_mode=SENSOR_RESIZE_MODE,
        image_threshold=window_threshold,
        pixel_threshold=sample_threshold,
        image_score_stats=ScoreStats(n=10, mean=0.2, std=0.1),
        pixel_score_stats=ScoreStats(n=10, mean=0.05, std=0.05),
        train_data_digest="sha256:test",
        created_at="2026-11-29T00:00:00Z",
        normalization=SENSOR_NORMALIZATION,
        sensor=spec,
    )


def build_tiny_sensor_model(path: Path, metadata: ModelMetadata | None = None, kernel: int = 5) -> Path:
    """A sensor model without torch: z-score per channel in the graph, moving average along T as the
    reconstruction (back in raw units), |z - smoothed z| as the anomaly map, its max over C and T as the score."""
    meta = metadata or tiny_sensor_metadata()
    spec = meta.sensor
    assert spec is not None
    c, t = len(spec.channels), spec.window_length
    pad = kernel // 2
    initializers = [
        helper.make_tensor("mean", TensorProto.FLOAT, [1, c, 1], list(spec.channel_mean)),
        helper.make_tensor("std", TensorProto.FLOAT, [1, c, 1], list(spec.channel_std)),
    ]
    nodes = [
        helper.make_node("Sub", [SENSOR_INPUT_NAME, "mean"], ["centered"]),
        helper.make_node("Div", ["centered", "std"], ["z"]),
        helper.make_node("AveragePool", ["z"], ["smooth"], kernel_shape=[kernel], pads=[pad, pad], count_include_pad=0),
        helper.make_node("Mul", ["smooth", "std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mean"], ["reconstruction"]),
        helper.make_node("Sub", ["z", "smooth"], ["diff"]),
        helper.make_node("Abs", ["diff"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_sensor",
        [helper.make_tensor_value_info(SENSOR_INPUT_NAME, TensorProto.FLOAT, ["N", c, t])],
        [
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["N", c, t]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", c, t]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        ],
        initializer=initializers,
    )
    return save_model(graph, meta, path)


def save_model(graph: onnx.GraphProto, meta: ModelMetadata, path: Path) -> Path:
    """The graph as a checked opset-17 model file with the contract's metadata."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
