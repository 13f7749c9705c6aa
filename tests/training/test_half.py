"""FP16 conversion: float32 inputs and outputs, float16 weights, the score head in float32, metadata carried over,
and the converted file scored by the line's own loader on the CPU within a small distance of the fp32 one."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.contract import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from pipeline.errors import MetadataError
from pipeline.inference import OnnxModel
from pipeline.sensors.model import SensorModel
from training.export.half import score_head, to_float16

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from model_factory import build_tiny_sensor_model, save_model, tiny_metadata

SIZE, FEATURES = 32, 16


def cosine_model(path: Path, metadata: ModelMetadata | None = None) -> Path:
    """A feature model in miniature, the default model's score head included: two convolutions give features and
    their reconstruction (large, like a backbone's), the map is 1 - their cosine similarity, whose norms' product
    (sum of squares times sum of squares) is far above float16's range."""
    rng = np.random.default_rng(0)
    weights = {
        "w_features": rng.normal(0, 8, (FEATURES, 1, 3, 3)),
        "w_decoder": rng.normal(0, 0.3, (FEATURES, FEATURES, 1, 1)),
        "w_restore": rng.normal(0, 0.1, (1, FEATURES, 3, 3)),
        "axis": np.array([1], np.int64),
        "one": np.array(1.0),
        "eps": np.array(1e-6),
    }
    initializers = [
        numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k) for k, v in weights.items()
    ]
    node = helper.make_node
    nodes = [
        node("Conv", [INPUT_NAME, "w_features"], ["features"], pads=[1, 1, 1, 1]),
        node("Conv", ["features", "w_decoder"], ["decoded"]),
        node("Conv", ["decoded", "w_restore"], ["restore_logits"], pads=[1, 1, 1, 1]),
        node("Sigmoid", ["restore_logits"], ["reconstruction"]),
        node("Mul", ["features", "decoded"], ["ab"]),
        node("Mul", ["features", "features"], ["aa"]),
        node("Mul", ["decoded", "decoded"], ["bb"]),
        node("ReduceSum", ["ab", "axis"], ["dot"], keepdims=1),
        node("ReduceSum", ["aa", "axis"], ["norm_a"], keepdims=1),
        node("ReduceSum", ["bb", "axis"], ["norm_b"], keepdims=1),
        node("Mul", ["norm_a", "norm_b"], ["norms"]),  # about 1e7 here: inf in float16
        node("Sqrt", ["norms"], ["root"]),
        node("Max", ["root", "eps"], ["safe_root"]),
        node("Div", ["dot", "safe_root"], ["cosine"]),
        node("Sub", ["one", "cosine"], ["anomaly_map"]),
        node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "cosine",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["N", 1, SIZE, SIZE]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, SIZE, SIZE]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        ],
        initializer=initializers,
    )
    return save_model(graph, metadata or tiny_metadata(size=SIZE), path)


def elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(proto)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    return types | {t.name: t.data_type for t in inferred.graph.initializer}


def test_fp16_keeps_float32_io_halves_the_weights_and_carries_the_metadata(tmp_path: Path) -> None:
    proto = onnx.load(str(cosine_model(tmp_path / "m.onnx")))
    before = proto.SerializeToString()
    half = to_float16(proto)
    assert proto.SerializeToString() == before  # the fp32 proto is left as it was
    assert [(i.name, i.type.tensor_type.elem_type) for i in half.graph.input] == [(INPUT_NAME, TensorProto.FLOAT)]
    assert [(o.name, o.type.tensor_type.elem_type) for o in half.graph.output] == [
        (name, TensorProto.FLOAT) for name in OUTPUT_NAMES
    ]
    types = elem_types(half)
    assert {types[name] for name in ("w_features", "w_decoder", "w_restore")} == {TensorProto.FLOAT16}
    assert types["features"] == types["decoded"] == TensorProto.FLOAT16  # the convolutions run in half precision
    metadata = ModelMetadata.from_props({p.key: p.value for p in half.metadata_props})
    assert metadata == replace(tiny_metadata(size=SIZE), precision="fp16")


def test_the_score_head_stays_float32(tmp_path: Path) -> None:
    proto = onnx.load(str(cosine_model(tmp_path / "m.onnx")))
    head = {out for node in score_head(proto.graph) for out in node.output}
    assert {"dot", "norms", "root", "cosine", "anomaly_map", "score"} <= head
    assert not head & {"features", "decoded", "ab", "reconstruction"}
    assert head_input_types(to_float16(proto), "Mul", "Sqrt", "Div") == {TensorProto.FLOAT}
    # what the head avoids: the norms' product (1e7) in float16
    assert head_input_types(to_float16(proto, score_head_fp32=False), "Sqrt") == {TensorProto.FLOAT16}


def head_input_types(proto: onnx.ModelProto, *ops: str) -> set[int]:
    """The types of what the score head's `ops` read (the head: the nodes after the first reduction)."""
    types = elem_types(proto)
    after_reduction = proto.graph.node[[n.op_type for n in proto.graph.node].index("ReduceSum") :]
    return {types[name] for node in after_reduction if node.op_type in ops for name in node.input if name in types}


@pytest.mark.parametrize("score_head_fp32", [True, False])
def test_the_cpu_provider_scores_an_fp16_file_close_to_the_fp32_one(tmp_path: Path, score_head_fp32: bool) -> None:
    """onnxruntime's CPU provider runs float16 graphs (casting back to float32 where it has no float16 kernel), so
    the fp16 file is checked here end to end through the line's loader; the figures on a GPU come from
    bench/gpu_parity.py."""
    fp32_path = cosine_model(tmp_path / "m.onnx")
    fp16_path = tmp_path / "m.fp16.onnx"
    onnx.save(to_float16(onnx.load(str(fp32_path)), score_head_fp32), str(fp16_path))
    batch = np.random.default_rng(1).random((5, 1, SIZE, SIZE), dtype=np.float32)
    full, half = OnnxModel(fp32_path, prefer_gpu=False), OnnxModel(fp16_path, prefer_gpu=False)
    assert half.metadata.precision == "fp16" and half.provider == "CPUExecutionProvider"
    half.warm_up(2)
    want, got = full.score(batch), half.score(batch)
    assert got.score.dtype == got.anomaly_map.dtype == np.float32
    np.testing.assert_allclose(got.score, want.score, atol=0.01)
    np.testing.assert_allclose(got.anomaly_map, want.anomaly_map, atol=0.02)
    assert np.corrcoef(got.anomaly_map.ravel(), want.anomaly_map.ravel())[0, 1] > 0.99
    restored = half.restore(batch)
    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, full.restore(batch), atol=0.01)


def test_a_file_that_is_not_fp32_is_refused(tmp_path: Path) -> None:
    half = to_float16(onnx.load(str(cosine_model(tmp_path / "m.onnx"))))
    with pytest.raises(MetadataError, match="precision"):
        to_float16(half)


def test_a_sensor_model_converts_too(tmp_path: Path) -> None:
    fp32_path = build_tiny_sensor_model(tmp_path / "s.onnx")
    fp16_path = tmp_path / "s.fp16.onnx"
    onnx.save(to_float16(onnx.load(str(fp32_path))), str(fp16_path))
    windows = np.random.default_rng(2).normal(size=(6, 3, 16)).astype(np.float32)
    full, half = SensorModel(fp32_path, prefer_gpu=False), SensorModel(fp16_path, prefer_gpu=False)
    assert half.metadata.precision == "fp16"
    np.testing.assert_allclose(half.score(windows).score, full.score(windows).score, rtol=2e-3)
