"""A conditional model on the line: each frame's camera id (or named header) reaches the ONNX `condition` input as
its vocabulary index, and a camera outside the vocabulary is scored on the unconditional path, logged once."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from pipeline.contract import CONDITION_INPUT_NAME, ConditionSpec
from pipeline.decode import Decoded, decode_record
from pipeline.inference import OnnxModel
from pipeline.verdict import judge
from pipeline.wire import PNG, FrameLimits, encode_frame
from tests.training.test_models import SIZE, tiny_metadata
from training.export.contract import ScoringGraph, export_onnx
from training.models import create_model

LIMITS = FrameLimits(max_bytes=1 << 20, max_pixels=1 << 20)


class RecordingSession:
    """Wraps an onnxruntime session and keeps every feed it is given."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> Any:
        self.feeds.append(feed)
        return self.session.run(outputs, feed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def tiny_cvae(tmp_path: Path, source: str = "camera-id") -> OnnxModel:
    torch.manual_seed(0)
    model = create_model("cvae", 1, widths=(8, 8, 16, 16), latent_channels=8, num_conditions=3)
    metadata = replace(tiny_metadata("cvae", 1), condition=ConditionSpec(source, ("cam-a", "cam-b")))
    out = tmp_path / "cvae.onnx"
    export_onnx(ScoringGraph(model, score_pool=3), metadata, out)
    return OnnxModel(out)


def frame(model: OnnxModel, camera: str, offset: int, extra: list[tuple[str, bytes]] | None = None) -> Decoded:
    pixels = np.random.default_rng(offset).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    encoded = encode_frame(pixels, camera_id=camera, content_type=PNG, seq=offset)
    record = SimpleNamespace(
        topic="frames", partition=0, offset=offset, value=encoded.value, headers=encoded.headers + (extra or [])
    )
    return decode_record(record, model, LIMITS)


def test_each_cameras_index_reaches_the_model_and_unknown_cameras_fall_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny_cvae(tmp_path)
    spy = RecordingSession(model.session)
    model.session = spy
    cameras = ["cam-a", "cam-b", "cam-a", "cam-z", "cam-b", "cam-z"]
    frames = [frame(model, camera, offset) for offset, camera in enumerate(cameras)]

    with caplog.at_level(logging.WARNING, logger="pipeline.conditions"):
        results = judge(model, frames, store_images=False)

    assert spy.feeds[0][CONDITION_INPUT_NAME].tolist() == [1, 2, 1, 0, 2, 0]
    assert spy.feeds[0][CONDITION_INPUT_NAME].dtype == np.int64
    inputs = np.stack([f.model_input for f in frames])
    expected = model.score(inputs, np.array([1, 2, 1, 0, 2, 0])).score
    assert [r.score for r in results] == pytest.approx(expected.tolist(), rel=1e-6)
    assert model.conditions is not None and model.conditions.take_fallbacks() == 2
    warnings = [r.getMessage() for r in caplog.records if "not in the model's vocabulary" in r.getMessage()]
    assert len(warnings) == 1 and "'cam-z'" in warnings[0]  # once per new value, not per frame

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.conditions"):
        judge(model, [frame(model, "cam-z", 9)], store_images=False)
    assert not caplog.records
    assert model.conditions.take_fallbacks() == 1


def test_a_named_header_is_the_condition_and_a_missing_one_falls_back(tmp_path: Path) -> None:
    model = tiny_cvae(tmp_path, source="header:variant")
    spy = RecordingSession(model.session)
    model.session = spy
    frames = [
        frame(model, "cam-1", 0, [("variant", b"cam-b")]),
        frame(model, "cam-1", 1, [("variant", b"cam-a")]),
        frame(model, "cam-a", 2),  # the camera id is not where this model looks
    ]
    judge(model, frames, store_images=True)
    assert spy.feeds[0][CONDITION_INPUT_NAME].tolist() == [2, 1, 0]


def test_without_conditions_a_conditional_model_scores_unconditionally(tmp_path: Path) -> None:
    model = tiny_cvae(tmp_path)
    batch = np.random.default_rng(0).random((2, 1, SIZE, SIZE), dtype=np.float32)
    assert model.score(batch).score == pytest.approx(model.score(batch, np.zeros(2, np.int64)).score)
    model.warm_up(2)  # the load path's warm-up needs no condition either
