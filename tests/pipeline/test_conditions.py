"""The condition block of conditional models: metadata round trip and checks, and the value -> index map the
runtime uses (unknown values fall back to index 0, counted, logged once per value)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from model_factory import build_tiny_model, tiny_metadata

from pipeline.conditions import ConditionMap
from pipeline.contract import ConditionSpec, ModelMetadata
from pipeline.errors import MetadataError, ModelLoadError
from pipeline.inference import OnnxModel
from pipeline.wire import FrameMeta

SPEC = ConditionSpec("camera-id", ("cam-a", "cam-b"))


def meta(camera: str) -> FrameMeta:
    return FrameMeta("image/png", camera, "line-1", datetime.now(UTC), (8, 8), "uint8", 0)


def test_the_condition_block_round_trips_and_models_without_it_keep_their_props() -> None:
    plain = tiny_metadata()
    assert "condition" not in plain.to_props()
    conditional = replace(plain, condition=SPEC)
    back = ModelMetadata.from_props(conditional.to_props())
    assert back.condition == SPEC
    assert back.with_thresholds(0.2, 0.1).condition == SPEC  # a threshold override keeps the vocabulary


@pytest.mark.parametrize(
    ("source", "values", "field"),
    [
        ("serial", ("a",), "condition.source"),
        ("header:", ("a",), "condition.source"),
        ("camera-id", ("a", "a"), "condition.values"),
        ("camera-id", ("",), "condition.values"),
    ],
)
def test_a_bad_condition_block_names_the_field(source: str, values: tuple[str, ...], field: str) -> None:
    with pytest.raises(MetadataError, match=field):
        ConditionSpec(source, values)


def test_values_map_to_indices_and_unknown_ones_fall_back_once_logged(caplog: pytest.LogCaptureFixture) -> None:
    conditions = ConditionMap(SPEC)
    with caplog.at_level(logging.WARNING, logger="pipeline.conditions"):
        indices = conditions.indices(["cam-b", "cam-new", "cam-a", "cam-new", None])
    assert indices.tolist() == [2, 0, 1, 0, 0]
    assert str(indices.dtype) == "int64"
    assert conditions.take_fallbacks() == 3 and conditions.take_fallbacks() == 0
    assert len(caplog.records) == 2  # 'cam-new' once, the missing value once


def test_the_value_comes_from_the_camera_id_or_the_named_header() -> None:
    assert ConditionMap(SPEC).value_of(meta("cam-a"), [("variant", b"x")]) == "cam-a"
    by_header = ConditionMap(ConditionSpec("header:variant", ("x",)))
    assert by_header.value_of(meta("cam-a"), [("variant", b"x")]) == "x"
    assert by_header.value_of(meta("cam-a"), []) is None


def test_metadata_with_a_condition_on_a_graph_without_the_input_is_refused(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "m.onnx", replace(tiny_metadata(size=32), condition=SPEC))
    with pytest.raises(ModelLoadError, match="condition"):
        OnnxModel(path)
