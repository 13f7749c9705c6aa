"""Every registered sensor model: forward, backward, ONNX export with the sensor contract, parity, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from pipeline.contract import (
    OUTPUT_NAMES,
    SENSOR_INPUT_NAME,
    SENSOR_NORMALIZATION,
    SENSOR_RESIZE_MODE,
    ModelMetadata,
    ScoreStats,
    SensorSpec,
)
from pipeline.sensors.model import SensorModel
from training.errors import ConfigError, UnknownModelError
from training.models import MODELS, SENSOR_MODELS, create_sensor_model
from training.models.sensor.family import sensor_loss
from training.sensors.export import SensorScoringGraph, export_sensor_onnx

WINDOW = 16
MEAN = np.array([0.0, 1.0, 230.0], dtype=np.float32)
STD = np.array([0.2, 0.1, 2.0], dtype=np.float32)


def tiny_sensor_metadata(name: str) -> ModelMetadata:
    stats = ScoreStats(n=2, mean=0.1, std=0.01, quantiles={"0.99": 0.12})
    spec = SensorSpec(("a", "b", "c"), WINDOW, 4, tuple(MEAN.tolist()), tuple(STD.tolist()), sample_rate_hz=1.0)
    return ModelMetadata(
        model_name="tiny",
        model_version="1",
        architecture=name,
        kind="sensor",
        input_size=WINDOW,
        input_channels=3,
        resize_mode=SENSOR_RESIZE_MODE,
        image_threshold=0.5,
        pixel_threshold=0.5,
        image_score_stats=stats,
        pixel_score_stats=stats,
        train_data_digest="0" * 64,
        created_at="2026-11-29T00:00:00+00:00",
        normalization=SENSOR_NORMALIZATION,
        sensor=spec,
    )


@pytest.mark.parametrize("name", sorted(SENSOR_MODELS))
def test_forward_backward_export_parity(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_sensor_model(name, 3, widths=(8, 4), kernel_size=5)
    x = torch.randn(4, 3, WINDOW)
    output = model(x)
    assert output.reconstruction.shape == x.shape
    assert output.anomaly_map.shape == x.shape
    loss = sensor_loss(model, x, kl_weight=1e-3)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    out = tmp_path / f"{name}.onnx"
    parity = export_sensor_onnx(SensorScoringGraph(model, MEAN, STD), tiny_sensor_metadata(name), out)
    assert parity < 1e-3
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == [SENSOR_INPUT_NAME]
    assert tuple(o.name for o in proto.graph.output) == OUTPUT_NAMES
    loaded = SensorModel(out, prefer_gpu=False)  # the line's loader, unchanged
    assert loaded.metadata.architecture == name and loaded.spec.channels == ("a", "b", "c")
    raw = (np.random.default_rng(0).standard_normal((5, 3, WINDOW)) * STD[:, None] + MEAN[:, None]).astype(np.float32)
    scores = loaded.score(raw)  # dynamic batch axis: 5 was never seen at export
    assert scores.score.shape == (5,)
    assert scores.anomaly_map.shape == scores.reconstruction.shape == (5, 3, WINDOW)


def test_normalisation_is_applied_inside_the_graph(tmp_path: Path) -> None:
    """Raw readings in; the graph's own z-score must match normalising by the stored mean and std by hand."""
    torch.manual_seed(0)
    model = create_sensor_model("sensor-cae", 3, widths=(8, 4), kernel_size=5).eval()
    out = tmp_path / "m.onnx"
    export_sensor_onnx(SensorScoringGraph(model, MEAN, STD), tiny_sensor_metadata("sensor-cae"), out)
    loaded = SensorModel(out, prefer_gpu=False)
    mean = np.array(loaded.spec.channel_mean, dtype=np.float32)[:, None]
    std = np.array(loaded.spec.channel_std, dtype=np.float32)[:, None]
    assert np.allclose(mean[:, 0], MEAN) and np.allclose(std[:, 0], STD)
    raw = (np.random.default_rng(1).standard_normal((2, 3, WINDOW)) * std + mean).astype(np.float32)
    with torch.no_grad():
        by_hand = model(torch.from_numpy((raw - mean) / std))
    got = loaded.score(raw)
    assert np.allclose(got.anomaly_map, by_hand.anomaly_map.numpy(), atol=1e-4)
    assert np.allclose(got.reconstruction, by_hand.reconstruction.numpy() * std + mean, atol=1e-3)
    assert np.allclose(got.score, by_hand.anomaly_map.numpy().mean(axis=2).max(axis=1), atol=1e-5)


def test_sensor_and_image_registries_stay_apart() -> None:
    assert not set(SENSOR_MODELS) & set(MODELS)
    with pytest.raises(UnknownModelError, match="valid names: sensor-cae, sensor-dae, sensor-vae"):
        create_sensor_model("cae", 3)


def test_denoising_variant_adds_noise_in_training_only() -> None:
    model = create_sensor_model("sensor-dae", 3, widths=(8, 4), kernel_size=5, dropout=0.0)
    assert model.config.noise_std == 0.2
    x = torch.zeros(2, 3, WINDOW)
    model.eval()
    assert torch.equal(model(x).reconstruction, model(x).reconstruction)
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x).reconstruction, model(x).reconstruction)


def test_bad_sensor_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        create_sensor_model("sensor-cae", 3, kernel_size=4)
    with pytest.raises(ConfigError, match=r"'latent'.*valid keys: dropout, kernel_size, noise_std, widths"):
        create_sensor_model("sensor-cae", 3, latent=8)
