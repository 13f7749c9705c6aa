"""The models the throughput benches measure (bench_pipeline.py, gpu_parity.py): the real default model fitted on the
simulator's normal frames, a random convolutional autoencoder standing in for a fast scorer, and a threshold
override that makes a model flag a chosen share of the synthetic stream."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipeline.contract import ModelMetadata, ScoreStats
from pipeline.dev.simulator import synthetic_frames
from pipeline.inference import OnnxModel
from pipeline.preprocess import preprocess_batch


def default_model(work: Path, minutes: float) -> Path:
    """The real default model (`lineguard train` defaults) fitted on the simulator's normal frames.

    Scoring speed does not depend on how well it is trained, so a short budget is enough; its
    thresholds come from its own calibration, as on a line.
    """
    from training.config import TrainConfig
    from training.demo import write_normal_frames
    from training.train import train

    data = write_normal_frames(work / "normal", count=120, seed=1)
    config = TrainConfig(
        data_dir=data,
        out=work / "default.onnx",
        max_minutes=minutes,
        show_progress=False,
        model_name="bench-default",
        model_version="1",
    )
    return train(config)


def conv_autoencoder(path: Path, size: int = 256, width: int = 32, seed: int = 0) -> Path:
    """A 4-layer convolutional autoencoder (2 strided convs, 2 transposed convs) with random weights.

    Same shape of compute as the design's CPU reference model; its scores are meaningless, so the
    image threshold is calibrated afterwards to flag about as many frames as the stream has defects.
    """
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def weight(name: str, shape: tuple[int, ...]) -> str:
        fan_in = int(np.prod(shape[1:]))
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name))
        return name

    layers = [
        ("Conv", 1, width),
        ("Conv", width, 2 * width),
        ("ConvTranspose", 2 * width, width),
        ("ConvTranspose", width, 1),
    ]
    current = "image"
    for index, (op, cin, cout) in enumerate(layers):
        shape = (cout, cin, 4, 4) if op == "Conv" else (cin, cout, 4, 4)
        out = f"h{index}"
        nodes.append(
            helper.make_node(op, [current, weight(f"w{index}", shape)], [out], strides=[2, 2], pads=[1, 1, 1, 1])
        )
        act = "Relu" if index < len(layers) - 1 else "Sigmoid"
        current = f"a{index}" if index < len(layers) - 1 else "reconstruction"
        nodes.append(helper.make_node(act, [out], [current]))
    nodes += [
        helper.make_node("Sub", ["image", "reconstruction"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["anomaly_map"], axes=[1], keepdims=1),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_ae",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, size, size])],
        [
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["N", 1, size, size]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, size, size]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, _metadata(size, 1.0, 1.0).to_props())
    onnx.save(model, str(path))
    return path


def _metadata(size: int, image_threshold: float, pixel_threshold: float) -> ModelMetadata:
    return ModelMetadata(
        model_name="bench-conv-ae",
        model_version="1",
        architecture="conv4-random",
        kind="image",
        input_size=size,
        input_channels=1,
        resize_mode="stretch",
        image_threshold=image_threshold,
        pixel_threshold=pixel_threshold,
        image_score_stats=ScoreStats(n=0, mean=0.0, std=0.0),
        pixel_score_stats=ScoreStats(n=0, mean=0.0, std=0.0),
        train_data_digest="none",
        created_at=datetime.now(UTC).isoformat(),
    )


def calibrate(model_path: Path, flagged: float) -> None:
    """Write a threshold override so that about `flagged` of the synthetic stream counts as defective."""
    model = OnnxModel(model_path, prefer_gpu=True)
    frames = [f.image for f in itertools.islice(synthetic_frames(99, 256, 0.05), 256)]
    scores = model.score_in_chunks(preprocess_batch(frames, model.metadata.input_spec), 32)
    image = float(np.quantile(scores.score, 1 - flagged))
    pixel = float(np.quantile(scores.anomaly_map, 0.999))
    model_path.with_name(model_path.name + ".thresholds.json").write_text(
        json.dumps({"image_threshold": image, "pixel_threshold": pixel})
    )
