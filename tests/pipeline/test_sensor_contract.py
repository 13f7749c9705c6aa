"""The sensor side of the ONNX contract: kind-aware metadata validation and a torch-free sensor model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.contract import ModelMetadata, SensorSpec
from pipeline.errors import MetadataError, ModelLoadError
from pipeline.sensors.model import SensorModel
from tests.pipeline.model_factory import build_tiny_model, build_tiny_sensor_model, tiny_metadata, tiny_sensor_metadata


def test_image_metadata_props_are_unchanged() -> None:
    props = tiny_metadata().to_props()
    assert "sensor" not in props
    assert ModelMetadata.from_props(props) == tiny_metadata()


def test_sensor_metadata_round_trips_through_props() -> None:
    meta = tiny_sensor_metadata(mean=(1.0, 2.0, 3.0), std=(0.5, 1.0, 2.0))
    props = meta.to_props()
    block = json.loads(props["sensor"])
    assert block == {
        "channels": ["a", "b", "c"],
        "window_length": 16,
        "window_stride": 8,
        "sample_rate_hz": None,
        "channel_mean": [1.0, 2.0, 3.0],
        "channel_std": [0.5, 1.0, 2.0],
        "level_free_channels": [],
        "level_statistic": "mean",
        "calendar": [],
        "period_samples": None,
        "point_rule": "all-windows",
        "adapt_rows": 0,
    }
    assert ModelMetadata.from_props(props) == meta


def test_level_free_channels_round_trip_and_must_name_channels() -> None:
    meta = tiny_sensor_metadata(mean=(1.0, 2.0, 3.0), std=(0.5, 1.0, 2.0))
    spec = meta.sensor
    assert spec is not None
    level_free = replace(spec, level_free_channels=("b",))
    with_level_free = replace(meta, sensor=level_free)
    assert ModelMetadata.from_props(with_level_free.to_props()).sensor == level_free
    for bad in (("z",), ("b", "b")):
        with pytest.raises(MetadataError, match=r"sensor\.level_free_channels"):
            replace(spec, level_free_channels=bad)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sensor": None}, "sensor"),
        ({"input_channels": 2}, "input_channels"),
        ({"input_size": 15}, "input_size"),
        ({"resize_mode": "stretch"}, "resize_mode"),
        ({"normalization": "x/255"}, "normalization"),
    ],
)
def test_sensor_metadata_is_checked_against_its_block(change: dict, field: str) -> None:
    with pytest.raises(MetadataError) as err:
        replace(tiny_sensor_metadata(), **change)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channels": ()}, "sensor.channels"),
        ({"channels": ("a", "a", "b")}, "sensor.channels"),
        ({"channels": ("a,b", "c", "d")}, "sensor.channels"),
        ({"window_length": 1}, "sensor.window_length"),
        ({"window_stride": 0}, "sensor.window_stride"),
        ({"window_stride": 17}, "sensor.window_stride"),
        ({"channel_mean": (0.0, float("nan"), 0.0)}, "sensor.channel_mean"),
        ({"channel_std": (1.0, 0.0, 1.0)}, "sensor.channel_std"),
        ({"channel_std": (1.0, 1.0)}, "sensor.channel_std"),
        ({"sample_rate_hz": -1.0}, "sensor.sample_rate_hz"),
        ({"level_statistic": "mode"}, "sensor.level_statistic"),
        ({"calendar": ("month",)}, "sensor.calendar"),
        ({"calendar": ("day", "day")}, "sensor.calendar"),
        ({"period_samples": 1}, "sensor.period_samples"),
        ({"point_rule": "any-window"}, "sensor.point_rule"),
    ],
)
def test_sensor_block_rules(change: dict, field: str) -> None:
    spec = tiny_sensor_metadata().sensor
    assert spec is not None
    with pytest.raises(MetadataError) as err:
        replace(spec, **change)
    assert err.value.field == field


def test_a_block_written_before_calendar_and_periods_loads_with_their_defaults() -> None:
    props = tiny_sensor_metadata().to_props()
    block = json.loads(props["sensor"])
    for key in ("level_statistic", "calendar", "period_samples", "point_rule", "adapt_rows"):
        del block[key]
    spec = ModelMetadata.from_props(props | {"sensor": json.dumps(block)}).sensor
    assert spec == tiny_sensor_metadata().sensor
    assert (spec.level_statistic, spec.calendar, spec.period_samples) == ("mean", (), None)
    assert spec.point_rule == "all-windows"  # models before the field: SKAB's notebook rule, as they were judged
    assert spec.adapt_rows == 0  # and no adaptation: the readings scored as they were


@pytest.mark.parametrize("bad", [1, -400, 2.5, "400", True, None])
def test_adapt_rows_round_trips_and_a_bad_value_in_props_is_refused(bad: object) -> None:
    meta = tiny_sensor_metadata()
    assert meta.sensor is not None
    adapted = replace(meta, sensor=replace(meta.sensor, adapt_rows=400))
    assert ModelMetadata.from_props(adapted.to_props()) == adapted
    block = json.loads(adapted.to_props()["sensor"]) | {"adapt_rows": bad}
    with pytest.raises(MetadataError) as err:
        ModelMetadata.from_props(adapted.to_props() | {"sensor": json.dumps(block)})
    assert err.value.field == "sensor.adapt_rows"


def test_a_point_rule_round_trips_and_an_unknown_one_in_props_is_refused() -> None:
    meta = tiny_sensor_metadata()
    assert meta.sensor is not None
    row_mean = replace(meta, sensor=replace(meta.sensor, point_rule="row-mean"))
    assert ModelMetadata.from_props(row_mean.to_props()) == row_mean
    block = json.loads(row_mean.to_props()["sensor"]) | {"point_rule": "any"}
    with pytest.raises(MetadataError) as err:
        ModelMetadata.from_props(row_mean.to_props() | {"sensor": json.dumps(block)})
    assert err.value.field == "sensor.point_rule"


def test_calendar_channels_count_as_model_inputs() -> None:
    meta = tiny_sensor_metadata()
    spec = replace(meta.sensor, calendar=("day", "week"), period_samples=16, level_statistic="median")
    with pytest.raises(MetadataError, match="input_channels"):
        replace(meta, sensor=spec)
    calendar_meta = replace(meta, sensor=spec, input_channels=len(spec.channels) + 4)
    assert ModelMetadata.from_props(calendar_meta.to_props()) == calendar_meta


def test_an_image_model_may_not_carry_a_sensor_block() -> None:
    with pytest.raises(MetadataError) as err:
        replace(tiny_metadata(), sensor=SensorSpec(("a",), 4, 2, (0.0,), (1.0,)))
    assert err.value.field == "sensor"


def test_tiny_sensor_model_follows_the_contract(tmp_path: Path) -> None:
    meta = tiny_sensor_metadata(mean=(10.0, -5.0, 0.0), std=(2.0, 1.0, 0.5))
    model = SensorModel(build_tiny_sensor_model(tmp_path / "s.onnx", meta), prefer_gpu=False)
    assert model.metadata == meta
    flat = np.broadcast_to(np.array([10.0, -5.0, 0.0], np.float32)[None, :, None], (2, 3, 16)).copy()
    spiky = flat.copy()
    spiky[1, 2, 7] += 5.0
    out = model.score(spiky)
    assert out.reconstruction.shape == out.anomaly_map.shape == (2, 3, 16) and out.score.shape == (2,)
    np.testing.assert_allclose(out.reconstruction[0], flat[0], atol=1e-5)  # raw units in, raw units out
    assert out.score[0] < 1e-5 < meta.image_threshold < out.score[1]
    assert int(np.argmax(out.anomaly_map[1].sum(axis=1))) == 2


def test_an_image_model_is_not_a_sensor_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a sensor model"):
        SensorModel(build_tiny_model(tmp_path / "i.onnx", tiny_metadata(size=32)), prefer_gpu=False)
