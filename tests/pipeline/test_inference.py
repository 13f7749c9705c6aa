"""Model runtime: threshold override file, warm-up, hot reload that keeps the old model on a bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from model_factory import build_tiny_model, tiny_metadata

from pipeline.contract import ModelMetadata
from pipeline.errors import ModelLoadError
from pipeline.inference import ModelHolder, OnnxModel, read_metadata, read_props, thresholds_path


def bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime + 5, stat.st_mtime + 5))


def test_threshold_override_file(tmp_path: Path) -> None:
    model_path = build_tiny_model(tmp_path / "m.onnx")
    thresholds_path(model_path).write_text(json.dumps({"image_threshold": 0.5, "pixel_threshold": 0.25}))
    model = OnnxModel(model_path, prefer_gpu=False)
    assert (model.metadata.image_threshold, model.metadata.pixel_threshold) == (0.5, 0.25)
    assert model.provider == "CPUExecutionProvider"


def test_reload_swaps_a_good_version_and_keeps_serving_on_a_bad_one(tmp_path: Path) -> None:
    model_path = build_tiny_model(tmp_path / "m.onnx", tiny_metadata(size=32, version="1"))
    holder = ModelHolder(model_path, prefer_gpu=False, warm_up_batch=2)
    assert holder.maybe_reload() is False

    build_tiny_model(model_path, tiny_metadata(size=32, version="2"))
    bump_mtime(model_path)
    assert holder.maybe_reload() is True
    assert holder.model.metadata.model_version == "2"

    model_path.write_bytes(b"not an onnx file at all")
    assert holder.maybe_reload() is False
    assert holder.model.metadata.model_version == "2"
    assert holder.rejected is not None and "not a readable ONNX file" in str(holder.rejected)
    scores = holder.model.score(np.zeros((3, 1, 32, 32), np.float32))
    assert scores.score.shape == (3,)

    build_tiny_model(model_path, tiny_metadata(size=64, version="3"))  # incompatible input layout
    bump_mtime(model_path)
    assert holder.maybe_reload() is False
    assert holder.model.metadata.model_version == "2"
    assert "input layout differs" in str(holder.rejected)

    build_tiny_model(model_path, tiny_metadata(size=32, version="4"), nan_below=0.5)  # NaN on flat frames
    bump_mtime(model_path)
    assert holder.maybe_reload() is False
    assert holder.model.metadata.model_version == "2"
    assert "non-finite" in str(holder.rejected)


def test_a_model_that_answers_nan_at_warm_up_is_refused(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "nan.onnx", tiny_metadata(size=32), nan_below=0.5)
    with pytest.raises(ModelLoadError, match="non-finite"):
        ModelHolder(path, prefer_gpu=False)


def test_metadata_read_through_onnxruntime_matches_a_full_load(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "m.onnx", tiny_metadata(size=32))
    proto = onnx.load(str(path))
    proto.metadata_props.add(key="note", value="after the graph")  # fields in any order
    onnx.save(proto, str(path))
    assert read_props(path) == {p.key: p.value for p in proto.metadata_props}
    assert read_metadata(path) == ModelMetadata.from_props(read_props(path)) == tiny_metadata(size=32)


@pytest.mark.parametrize("cut", [1, 100, -3])
def test_a_corrupt_or_truncated_file_is_a_model_load_error(tmp_path: Path, cut: int) -> None:
    data = build_tiny_model(tmp_path / "m.onnx").read_bytes()
    for bad in (b"\x00garbage", b"not an onnx file at all", data[:cut]):
        (tmp_path / "bad.onnx").write_bytes(bad)
        with pytest.raises(ModelLoadError, match="not a readable ONNX file"):
            read_props(tmp_path / "bad.onnx")
    with pytest.raises(ModelLoadError, match="file not found"):
        read_props(tmp_path / "missing.onnx")
