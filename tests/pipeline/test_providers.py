"""Execution providers without a GPU: which are asked for (TensorRT, CUDA, CPU) and why the one that runs does, the
TensorRT options, and the IO-binding scoring path of the CUDA branch run on CPU buffers against the plain run."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from model_factory import build_tiny_model, tiny_metadata
from onnx import TensorProto, helper

from pipeline.contract import CONDITION_INPUT_NAME, ConditionSpec
from pipeline.inference import ModelHolder, OnnxModel, image_loader
from pipeline.providers import CPU, CUDA, TENSORRT, TensorRT, choose_providers, provider_reason
from pipeline.settings import load_settings

ALL = [TENSORRT, CUDA, CPU]
TRT_OPTIONS = {"trt_fp16_enable": "False"}


@pytest.mark.parametrize(
    ("available", "prefer_gpu", "tensorrt", "wanted"),
    [
        (ALL, True, TRT_OPTIONS, [(TENSORRT, TRT_OPTIONS), CUDA, CPU]),
        (ALL, True, None, [CUDA, CPU]),  # TensorRT only when asked for
        ([CUDA, CPU], True, TRT_OPTIONS, [CUDA, CPU]),  # asked for, not in this build
        (ALL, False, TRT_OPTIONS, [CPU]),  # the CPU by choice wins over TensorRT
        ([CPU], True, TRT_OPTIONS, [CPU]),  # the CPU package
        ([TENSORRT, CPU], True, TRT_OPTIONS, [CPU]),  # never TensorRT without CUDA to fall back on
    ],
)
def test_choose_providers(
    monkeypatch: pytest.MonkeyPatch,
    available: list[str],
    prefer_gpu: bool,
    tensorrt: dict[str, str] | None,
    wanted: list[object],
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    assert choose_providers(prefer_gpu, tensorrt) == wanted


def why_not(provider: str) -> str:
    return {TENSORRT: "libnvinfer.so.10 missing", CUDA: "no NVIDIA driver"}[provider]


CACHED = TensorRT(cache_dir=Path("/var/cache/trt"))


@pytest.mark.parametrize(
    ("running", "prefer_gpu", "tensorrt", "available", "reason"),
    [
        (TENSORRT, True, CACHED, ALL, "asked for; engine cache /var/cache/trt"),
        (TENSORRT, True, TensorRT(), ALL, "asked for; no engine cache: built at every start"),
        (CUDA, True, None, ALL, ""),  # the plain GPU line: nothing to explain
        (CUDA, True, CACHED, ALL, "asked for TensorRT, which is not loadable: libnvinfer.so.10 missing"),
        (CUDA, True, CACHED, [CUDA, CPU], "asked for TensorRT, which this onnxruntime build does not have"),
        (CPU, False, None, ALL, "by choice: prefer_gpu is off"),
        (CPU, False, CACHED, ALL, "by choice: prefer_gpu is off; TensorRT asked for, which needs the GPU"),
        (CPU, True, None, ALL, "CUDA provider unavailable: no NVIDIA driver"),
        (CPU, True, None, [CPU], "CUDA provider unavailable: not in this onnxruntime build (the CPU package)"),
        (
            CPU,
            True,
            CACHED,
            ALL,
            "CUDA provider unavailable: no NVIDIA driver; TensorRT asked for, which needs it too",
        ),
    ],
)
def test_the_reason_for_the_provider_that_runs(
    running: str, prefer_gpu: bool, tensorrt: TensorRT | None, available: list[str], reason: str
) -> None:
    assert provider_reason(running, prefer_gpu, tensorrt, available, why_not) == reason


def test_tensorrt_options_cover_every_batch_up_to_the_line_batch() -> None:
    shapes = {"image": (1, 256, 256), "condition": ()}
    options = TensorRT(cache_dir=Path("/c"), max_batch=32).options(shapes, fp16=True)
    assert options == {
        "trt_fp16_enable": "True",
        "trt_profile_min_shapes": "image:1x1x256x256,condition:1",
        "trt_profile_opt_shapes": "image:32x1x256x256,condition:32",
        "trt_profile_max_shapes": "image:32x1x256x256,condition:32",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": "/c",
    }
    assert "trt_engine_cache_enable" not in TensorRT().options(shapes, fp16=False)


def test_tensorrt_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert TensorRT.from_settings(load_settings()) is None  # opt-in
    monkeypatch.setenv("LINEGUARD_TENSORRT", "true")
    monkeypatch.setenv("LINEGUARD_TENSORRT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LINEGUARD_BATCH_SIZE", "16")
    assert TensorRT.from_settings(load_settings()) == TensorRT(cache_dir=tmp_path, max_batch=16)


def test_asking_for_tensorrt_here_runs_on_the_cpu_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """This machine's onnxruntime-gpu lists TensorRT and CUDA but loads neither: one line says so, nothing else."""
    path = build_tiny_model(tmp_path / "m.onnx", tiny_metadata(size=32))
    settings = load_settings(tensorrt=True, tensorrt_cache_dir=tmp_path / "trt")
    with caplog.at_level(logging.INFO, logger="pipeline.inference"):
        model = image_loader(settings)(path, True)
    assert model.provider == CPU
    lines = [r.getMessage() for r in caplog.records if "runs on" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("model tiny-blur v1 runs on CPUExecutionProvider (")
    assert "TensorRT asked for" in lines[0]


@pytest.mark.parametrize("model", ["plain", "conditional", "unstated map size"])
def test_io_binding_scores_as_the_plain_run_for_every_batch_size(tmp_path: Path, model: str) -> None:
    conditional = model == "conditional"
    path = conditional_model(tmp_path / "c.onnx") if conditional else build_tiny_model(tmp_path / "m.onnx")
    plain = OnnxModel(path, prefer_gpu=False)
    bound = OnnxModel(path, prefer_gpu=False, bind_io=True)
    assert plain._bound is None and bound._bound is not None  # the CPU default is the plain run
    if model == "unstated map size":  # a graph whose outputs' sizes are symbolic: onnxruntime allocates them
        bound._bound._shapes = {name: ["C", "H", "W"][: len(dims)] for name, dims in bound._bound._shapes.items()}
    spec = plain.metadata.input_spec
    rng = np.random.default_rng(0)
    frames = rng.random((32, spec.channels, spec.size, spec.size), dtype=np.float32)
    conditions = rng.integers(0, 2, len(frames)) if conditional else None
    kept = []
    for size in (32, 32, 7, 1, 32, 5, 3, 2, 9):  # a last short batch, sizes beyond the buffers kept, then again
        batch = frames[:size]
        cond = None if conditions is None else conditions[:size]
        want, got = plain.score(batch, cond), bound.score(batch, cond)
        np.testing.assert_array_equal(got.score, want.score)
        np.testing.assert_array_equal(got.anomaly_map, want.anomaly_map)
        kept.append((got, want))
    for got, want in kept:  # each batch's results are its own, not views of buffers the next batch overwrote
        np.testing.assert_array_equal(got.score, want.score)
    assert len(bound._bound._sizes) <= bound._bound.KEPT_SIZES  # type: ignore[union-attr]


def conditional_model(path: Path) -> Path:
    """The tiny model with the second input: each frame's map shifted by its condition index / 100."""
    build_tiny_model(path, tiny_metadata(size=32))
    proto = onnx.load(str(path))
    graph = proto.graph
    graph.input.append(helper.make_tensor_value_info(CONDITION_INPUT_NAME, TensorProto.INT64, ["N"]))
    for node in graph.node:
        node.output[:] = ["plain_map" if out == "anomaly_map" else out for out in node.output]
        node.input[:] = ["plain_map" if name == "anomaly_map" else name for name in node.input]
    graph.initializer.extend(
        [
            helper.make_tensor("per_index", TensorProto.FLOAT, [], [0.01]),
            helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Cast", [CONDITION_INPUT_NAME], ["index"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["index", "axes"], ["index4"]),
            helper.make_node("Mul", ["index4", "per_index"], ["shift"]),
            helper.make_node("Add", ["plain_map", "shift"], ["anomaly_map"]),
        ]
    )
    # the score reads the shifted map
    for node in graph.node:
        if node.op_type == "ReduceMax":
            node.input[0] = "anomaly_map"
    onnx.helper.set_model_props(
        proto, replace(tiny_metadata(size=32), condition=ConditionSpec("camera-id", ("cam-a",))).to_props()
    )
    sorted_nodes = topological(graph)
    del graph.node[:]
    graph.node.extend(sorted_nodes)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        node = next(n for n in pending if all(name in ready for name in n.input))
        pending.remove(node)
        ordered.append(node)
        ready.update(node.output)
    return ordered


def test_io_binding_survives_a_reload(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "m.onnx", tiny_metadata(size=32, version="1"))
    holder = ModelHolder(path, prefer_gpu=False, warm_up_batch=4, load=partial(OnnxModel, bind_io=True))
    batch = np.random.default_rng(1).random((4, 1, 32, 32), dtype=np.float32)
    first = holder.model.score(batch)
    build_tiny_model(path, tiny_metadata(size=32, version="2"), kernel=3)
    stat = path.stat()
    os.utime(path, (stat.st_atime + 5, stat.st_mtime + 5))
    assert holder.maybe_reload() is True
    second = holder.model.score(batch)
    assert holder.model._bound is not None
    want = OnnxModel(path, prefer_gpu=False).score(batch)
    np.testing.assert_array_equal(second.score, want.score)
    assert not np.array_equal(first.score, second.score)  # the new graph's buffers, not the old one's


def test_the_consumers_onnxruntime_threads_come_from_the_settings(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "m.onnx", tiny_metadata(size=32))
    settings = load_settings(inference_threads=1, inference_spinning=True)
    options = image_loader(settings)(path, False).session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    default = image_loader(load_settings())(path, False).session.get_session_options()
    assert default.intra_op_num_threads == 0  # one per core
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "0"
