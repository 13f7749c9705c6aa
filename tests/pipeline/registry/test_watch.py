"""Following the registry: the holder swaps in the active version through its checked reload path, refuses a file
changed after registration, and serves on while the database is unreachable."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
from model_factory import build_tiny_model, build_tiny_sensor_model, tiny_metadata, tiny_sensor_metadata
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from pipeline.errors import ConfigError
from pipeline.inference import ModelHolder
from pipeline.registry.gate import PromotionRequest, promote
from pipeline.registry.watch import ActiveModelWatcher, follow_registry, serving_model_path, serving_sensor_model_path
from pipeline.sensors.model import SensorModel
from pipeline.settings import Settings
from pipeline.storage.engine import open_database


def test_the_holder_follows_the_active_version(db_url: str, tmp_path: Path) -> None:
    _, sessions = open_database(db_url)
    v1 = build_tiny_model(tmp_path / "v1.onnx", tiny_metadata(version="1"))
    v2 = build_tiny_model(tmp_path / "v2.onnx", tiny_metadata(version="2"))
    holder = ModelHolder(v1, prefer_gpu=False)
    watcher = ActiveModelWatcher(sessions, "tiny-blur", interval_s=60).start()
    try:
        holder.follow = watcher.wanted
        assert watcher.wanted() is None and holder.maybe_reload() is False  # nothing active: its own file
        promote(sessions, PromotionRequest(v2, decided_by="test"))
        assert holder.maybe_reload() is False  # the watcher has not looked since
        watcher.check()
        assert holder.maybe_reload() is True and holder.model.metadata.model_version == "2"
        assert holder.path == v2 and holder.maybe_reload() is False
        # the promoted file is replaced behind the registry's back: refused, v2 serves on
        build_tiny_model(v2, replace(tiny_metadata(version="2"), image_threshold=0.5))
        assert holder.maybe_reload() is False
        assert holder.rejected is not None and "differs from the registered one" in str(holder.rejected)
        assert holder.model.metadata.image_threshold == 0.08
    finally:
        watcher.stop()


def test_an_unreachable_registry_keeps_the_serving_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'line.db'}"
    _, sessions = open_database(url)
    v1 = build_tiny_model(tmp_path / "v1.onnx", tiny_metadata(version="1"))
    v2 = build_tiny_model(tmp_path / "v2.onnx", tiny_metadata(version="2"))
    promote(sessions, PromotionRequest(v2, decided_by="test"))
    watcher = ActiveModelWatcher(sessions, "tiny-blur", interval_s=60)
    watcher.check()
    holder = ModelHolder(v1, prefer_gpu=False)
    holder.follow = watcher.wanted
    # the database goes away: a server nobody listens on, with a short connect timeout
    down = create_engine("postgresql+psycopg://lineguard@127.0.0.1:9/lineguard", connect_args={"connect_timeout": 1})
    watcher.sessions = sessionmaker(down)
    with caplog.at_level(logging.WARNING, logger="pipeline.registry.watch"):
        watcher.check()
        watcher.check()
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1  # once per outage
    assert "model registry unreadable" in caplog.records[0].message
    assert holder.maybe_reload() is True and holder.model.metadata.model_version == "2"  # its last answer
    fresh = ActiveModelWatcher(sessionmaker(down), "tiny-blur", interval_s=60)
    fresh.check()
    holder.follow = fresh.wanted
    assert holder.maybe_reload() is False and holder.model.metadata.model_version == "2"


def test_the_model_a_consumer_starts_with(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'line.db'}"
    _, sessions = open_database(url)
    v1 = build_tiny_model(tmp_path / "v1.onnx", tiny_metadata(version="1"))
    v2 = build_tiny_model(tmp_path / "v2.onnx", tiny_metadata(version="2"))
    registry = Settings(database_url=url, model_source="registry")
    with pytest.raises(ConfigError, match="no active version"):
        serving_model_path(registry, sessions)
    assert serving_model_path(registry.model_copy(update={"model_path": v1}), sessions) == v1
    promote(sessions, PromotionRequest(v2, decided_by="test"))
    assert serving_model_path(registry, sessions) == v2.resolve()
    assert serving_model_path(registry.model_copy(update={"model_path": v1}), sessions) == v2.resolve()
    assert serving_model_path(Settings(database_url=url, model_path=v1), sessions) == v1  # model_source=file


def test_image_and_sensor_models_share_the_registry_by_kind(tmp_path: Path) -> None:
    """The most recently activated model of any name is the newest of the wanted kind: a sensor model promoted last
    is never served as the image model, and a sensor model starts from the active version of its own name."""
    url = f"sqlite:///{tmp_path / 'line.db'}"
    _, sessions = open_database(url)
    image = build_tiny_model(tmp_path / "image.onnx", tiny_metadata(version="1"))
    sensor_v1 = build_tiny_sensor_model(tmp_path / "s1.onnx", tiny_sensor_metadata(version="1"))
    sensor_v2 = build_tiny_sensor_model(tmp_path / "s2.onnx", tiny_sensor_metadata(version="2"))
    registry = Settings(database_url=url, model_source="registry", sensor_model_path=sensor_v1)
    assert serving_model_path(registry, sessions) is None  # no image model active: the sensor model serves alone
    assert serving_sensor_model_path(registry, sessions) == sensor_v1  # nothing of its name active: its own file
    promote(sessions, PromotionRequest(image, decided_by="test"))
    promote(sessions, PromotionRequest(sensor_v2, decided_by="test"))  # the first version of tiny-sensor: initial
    assert serving_model_path(registry, sessions) == image.resolve()
    assert serving_sensor_model_path(registry, sessions) == sensor_v2.resolve()
    assert serving_sensor_model_path(registry.model_copy(update={"model_source": "file"}), sessions) == sensor_v1
    with pytest.raises(ConfigError, match="no active version"):
        serving_model_path(
            Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", model_source="registry"),
            open_database(f"sqlite:///{tmp_path / 'empty.db'}")[1],
        )


def test_a_sensor_holder_follows_its_active_version(tmp_path: Path) -> None:
    _, sessions = open_database(f"sqlite:///{tmp_path / 'line.db'}")
    v1 = build_tiny_sensor_model(tmp_path / "s1.onnx", tiny_sensor_metadata(version="1"))
    v2 = build_tiny_sensor_model(tmp_path / "s2.onnx", tiny_sensor_metadata(version="2"))
    holder = ModelHolder(v1, prefer_gpu=False, load=SensorModel)
    stop = follow_registry(Settings(model_source="registry", model_reload_check_s=0.1), sessions, holder)
    try:
        promote(sessions, PromotionRequest(v2, decided_by="test"))
        assert holder.follow is not None
        deadline = time.monotonic() + 30
        while holder.follow() is None and time.monotonic() < deadline:  # its thread looks every 0.1 s
            time.sleep(0.05)
        assert holder.maybe_reload() is True and holder.model.metadata.model_version == "2"
    finally:
        stop()
