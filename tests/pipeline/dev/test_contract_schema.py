"""docs/contract.schema.json is what pipeline/contract.py generates, and it describes real models' metadata."""

from __future__ import annotations

import json

from model_factory import tiny_metadata, tiny_sensor_metadata

from pipeline.dev.contract_schema import SCHEMA_PATH, schema_text


def test_the_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), "run: python -m pipeline.dev.contract_schema"


def test_the_schema_names_every_prop_with_its_meaning_and_the_required_ones() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    for meta in (tiny_metadata(), tiny_sensor_metadata()):
        assert set(meta.to_props()) <= set(schema["properties"])
    assert all(field.get("description") for field in schema["properties"].values())
    sensor = schema["$defs"]["SensorSpec"]["properties"]
    assert sensor["window_length"]["minimum"] == 2 and sensor["level_statistic"]["enum"] == ["mean", "median"]
    assert "model_name" in schema["required"] and "sensor" not in schema["required"]
