"""The autoencoder family's training knobs: named corruptions, the KL warm-up, greedy layer-wise pretraining of the
stacked autoencoder (what it freezes and unfreezes), and a conditional model trained from condition subfolders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.contract import CONDITION_INPUT_NAME
from pipeline.inference import OnnxModel, read_metadata
from training.config import TrainConfig
from training.data.corruptions import CORRUPTIONS, corrupt
from training.errors import ConfigError
from training.export.decoder import decoder_path
from training.models import create_model
from training.models.losses import kl_warmup
from training.models.stacked import StackedAE
from training.models.stacked.pretraining import (
    PretrainPlan,
    freeze_for_layer,
    layer_loss,
    pretrain_layers,
    unfreeze_all,
)
from training.train import train

TINY = {"widths": (8, 8, 16, 16), "latent_channels": 8}


def test_kl_warm_up_rises_linearly_from_zero_to_the_weight() -> None:
    weights = [kl_warmup(0.01, epoch, warmup_epochs=4) for epoch in range(1, 8)]
    assert weights == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    assert kl_warmup(0.01, 1, warmup_epochs=0) == 0.01  # no warm-up: full weight from the first epoch


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_each_corruption_changes_what_it_says_and_masks_only_defects(kind: str) -> None:
    rng = np.random.default_rng(0)
    clean = rng.random((6, 1, 32, 32), dtype=np.float32) * 0.5 + 0.25
    inputs, masks = corrupt(kind, clean, clean, np.random.default_rng(1), probability=1.0, level=0.1)
    assert inputs.shape == clean.shape and masks.shape == (6, 1, 32, 32)
    assert inputs.dtype == np.float32 and inputs.min() >= 0 and inputs.max() <= 1
    changed = np.abs(inputs - clean).reshape(6, -1).max(axis=1) > 0
    assert changed.all() == (kind != "none")
    assert bool(masks.any()) == (kind in ("synthetic", "mask"))  # noise is not a defect to segment
    untouched, _ = corrupt(kind, clean, clean, np.random.default_rng(1), probability=0.0, level=0.1)
    assert np.array_equal(untouched, clean)


def test_unknown_corruption_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"corruption.*'blur'"):
        TrainConfig(data_dir=tmp_path, out=tmp_path / "m.onnx", backbone="none", corruption="blur")


def layer_state(model: StackedAE, level: int) -> list[torch.Tensor]:
    parts = (model.encoders[level], model.decoders[level])
    return [t.detach().clone() for part in parts for t in part.state_dict().values()]


def test_layer_wise_pretraining_trains_one_pair_and_freezes_the_rest() -> None:
    torch.manual_seed(0)
    model = create_model("stacked-ae", 1, **TINY)
    assert isinstance(model, StackedAE) and len(model.encoders) == 5  # four widths + the bottleneck pair
    freeze_for_layer(model, 1)
    trainable = {
        name.split(".")[0] + "." + name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad
    }
    assert trainable == {"encoders.1", "decoders.1"}
    assert not model.encoders[0].training  # frozen batch norm: its running statistics must not move

    below, own, above = layer_state(model, 0), layer_state(model, 1), layer_state(model, 2)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = torch.rand(4, 1, 32, 32)
    for _ in range(2):
        optimizer.zero_grad()
        layer_loss(model, 1, x, x).backward()
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(below, layer_state(model, 0), strict=True))  # weights and BN stats
    assert all(torch.equal(a, b) for a, b in zip(above, layer_state(model, 2), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(own, layer_state(model, 1), strict=True))

    unfreeze_all(model)
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_pretrain_layers_visits_every_pair_and_leaves_everything_trainable() -> None:
    torch.manual_seed(0)
    model = create_model("stacked-ae", 1, **TINY)
    before = [layer_state(model, level) for level in range(5)]
    images = np.random.default_rng(0).random((8, 1, 32, 32), dtype=np.float32)
    plan = PretrainPlan(1, 1.0, 4, 1e-3, "gaussian", 0.1, 1.0)
    losses = pretrain_layers(model, images, plan, torch.device("cpu"))
    assert len(losses) == 5 and all(np.isfinite(losses))
    for level in range(5):
        assert not all(torch.equal(a, b) for a, b in zip(before[level], layer_state(model, level), strict=True))
    assert all(p.requires_grad for p in model.parameters())


def test_stacked_ae_trains_with_and_without_pretraining(tiny_dataset: Path, tmp_path: Path) -> None:
    for share in (0.5, 0.0):
        out = tmp_path / f"stacked-{share}.onnx"
        cfg = TrainConfig(
            data_dir=tiny_dataset, out=out, model="stacked-ae", backbone="none", size=32, epochs=4,
            pretrain_fraction=share, show_progress=False, **TINY,
        )  # fmt: skip
        train(cfg)
        record = read_metadata(out).training_config
        assert bool(record["selection"]) == (share > 0)
        assert len(record["summary"]["val_losses"]) == record["summary"]["epochs"]


def conditioned_dataset(tiny_dataset: Path, root: Path) -> Path:
    """The tiny set's normals split over two camera subfolders, a few left directly in train/good."""
    data = root / "cams"
    shutil.copytree(tiny_dataset, data)
    good = data / "train" / "good"
    files = sorted(good.iterdir())
    for camera, chunk in (("cam-a", files[0:5]), ("cam-b", files[5:10])):
        (good / camera).mkdir()
        for path in chunk:
            path.rename(good / camera / path.name)
    return data


def test_cvae_trains_from_condition_subfolders_and_exports_its_vocabulary(tiny_dataset: Path, tmp_path: Path) -> None:
    data = conditioned_dataset(tiny_dataset, tmp_path)
    out = tmp_path / "cvae.onnx"
    args = ["train", str(data), "--out", str(out), "--model", "cvae", "--backbone", "none", "--size", "32"]
    args += ["--epochs", "3", "--kl-warmup-epochs", "2", "--condition-source", "header:variant"]
    args += ["--corruption", "mask", "--score", "elbo"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    model = OnnxModel(out)
    assert model.metadata.condition is not None
    assert model.metadata.condition.values == ("cam-a", "cam-b")
    assert model.metadata.condition.header == "variant"
    assert [i.name for i in model.session.get_inputs()] == ["image", CONDITION_INPUT_NAME]
    record = model.metadata.training_config
    assert (record["corruption"], record["score"], record["kl_warmup_epochs"]) == ("mask", "elbo", 2)
    decoder = onnx.load(str(decoder_path(out)))
    props = {p.key: p.value for p in decoder.metadata_props}
    assert props["kind"] == "decoder" and int(props["latent_size"]) == 64 * 2 * 2  # the CLI's latent channels
    assert [i.name for i in decoder.graph.input] == ["latent", CONDITION_INPUT_NAME]


def test_an_unknown_corruption_on_the_command_line_names_the_field(tmp_path: Path) -> None:
    args = ["train", str(tmp_path), "--out", str(tmp_path / "m.onnx"), "--model", "cae-plain", "--corruption", "blur"]
    result = CliRunner().invoke(build_app(), args)
    assert isinstance(result.exception, ConfigError)  # the entry point prints it as "Error: config field ..."
    assert "'corruption' = 'blur'" in str(result.exception)
