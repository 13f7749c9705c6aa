"""The false-alarm block of the ONNX contract: how a threshold was set from a budget, validated on load."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pipeline.contract import FalseAlarmSpec, ModelMetadata
from pipeline.errors import MetadataError
from tests.pipeline.model_factory import tiny_metadata

SPEC = FalseAlarmSpec(
    rate=1e-3, expected_rate=9e-4, interval_low=1e-4, interval_high=4e-3, n_normals=70, method="gpd-tail", warning="few"
)


def test_false_alarm_block_round_trips_and_is_absent_when_unset() -> None:
    assert "false_alarm" not in tiny_metadata().to_props()
    meta = replace(tiny_metadata(), false_alarm=SPEC)
    assert ModelMetadata.from_props(meta.to_props()) == meta


def test_a_new_image_threshold_drops_the_budget_a_pixel_threshold_keeps_it() -> None:
    meta = replace(tiny_metadata(), false_alarm=SPEC)
    assert meta.with_thresholds(meta.image_threshold, 0.9).false_alarm == SPEC
    assert meta.with_thresholds(meta.image_threshold + 1, meta.pixel_threshold).false_alarm is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rate": 0.0}, "false_alarm.rate"),
        ({"rate": 1.5}, "false_alarm.rate"),
        ({"expected_rate": float("nan")}, "false_alarm.expected_rate"),
        ({"interval_low": 0.5, "interval_high": 0.1}, "false_alarm.interval_low"),
        ({"n_normals": 0}, "false_alarm.n_normals"),
        ({"method": "guess"}, "false_alarm.method"),
    ],
)
def test_false_alarm_block_rules(change: dict, field: str) -> None:
    props = replace(tiny_metadata(), false_alarm=SPEC).to_props()
    block = json.loads(props["false_alarm"]) | change
    props["false_alarm"] = json.dumps(block)
    with pytest.raises(MetadataError) as raised:
        ModelMetadata.from_props(props)
    assert raised.value.field == field


def test_a_malformed_block_is_a_metadata_error() -> None:
    props = tiny_metadata().to_props() | {"false_alarm": json.dumps(["not", "a", "block"])}
    with pytest.raises(MetadataError):
        ModelMetadata.from_props(props)
