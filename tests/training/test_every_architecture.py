"""Every registered architecture trains, exports and evaluates through the CLI (`lineguard train` or `train-sensors`,
then `lineguard evaluate`) on plain tiny data: image models on an MVTec folder with one camera (no subfolders of
train/good), sensor models on one CSV recording. A model that needs what the data lacks says so in one line first."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.inference import read_metadata
from tests.training.sensor_data_factory import labelled_recording, synthetic_readings, write_sensor_csv
from training.data.synthetic_set import write_synthetic_dataset
from training.export.decoder import decoder_path
from training.models import MODELS, SENSOR_MODELS, model_entry

runner = CliRunner()
app = build_app()
# 10 normals at 32 px, one epoch: seconds per model; the CLI's default widths, so the registry's own networks
IMAGE_ARGS = ["--epochs", "1", "--size", "32", "--batch-size", "4", "--max-minutes", "5", "--version", "1"]
# the quantile threshold: the false-alarm budget's tail fits would take most of the time on any data
SENSOR_ARGS = ["--epochs", "1", "--window", "16", "--batch-size", "32", "--quantile", "0.99", "--version", "1"]


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plain") / "parts"
    return write_synthetic_dataset(root, n_train=10, n_test_good=3, n_test_defect=3, size=32, seed=4)


@pytest.fixture(scope="module")
def plain_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plain-sensors")
    return write_sensor_csv(folder / "normal.csv", synthetic_readings(240, seed=2))


def evaluated(model: Path, data: Path) -> dict[str, float]:
    result = runner.invoke(app, ["evaluate", str(model), str(data), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_image_architecture_trains_exports_and_evaluates_on_a_plain_folder(
    name: str, plain_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out, encoder = tmp_path / f"{name}.onnx", tmp_path / f"{name}.encoder.onnx"
    args = ["train", str(plain_folder), "--out", str(out), "--model", name, "--encoder-only-out", str(encoder)]
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, [*args, *IMAGE_ARGS])
    assert result.exit_code == 0, result.output

    metadata = read_metadata(out)
    assert (metadata.architecture, metadata.input_size, metadata.input_channels) == (name, 32, 1)
    assert metadata.training_config["summary"]["epochs"] == 1
    assert encoder.is_file() and decoder_path(out).is_file() == model_entry(name).family.has_decoder
    if model_entry(name).conditional:
        # one camera: no vocabulary, every frame on the unconditional path; said once, in one line, before training
        assert metadata.condition is not None and metadata.condition.values == ()
        said = [r.getMessage() for r in caplog.records if "no condition subfolders" in r.getMessage()]
        assert len(said) == 1 and "\n" not in said[0] and name in said[0]
    else:
        assert metadata.condition is None

    metrics = evaluated(out, plain_folder)
    assert (metrics["n_good"], metrics["n_defect"]) == (3, 3)
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and 0.0 <= metrics["pixel_auroc"] <= 1.0


@pytest.mark.parametrize("name", sorted(SENSOR_MODELS))
def test_each_sensor_architecture_trains_exports_and_evaluates_on_a_plain_csv(
    name: str, plain_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"{name}.onnx"
    result = runner.invoke(app, ["train-sensors", str(plain_csv), "--out", str(out), "--model", name, *SENSOR_ARGS])
    assert result.exit_code == 0, result.output

    metadata = read_metadata(out)
    assert (metadata.kind, metadata.architecture, metadata.input_size) == ("sensor", name, 16)
    assert metadata.training_config["fit"]["epochs"] == 1

    metrics = evaluated(out, labelled_recording(tmp_path / "faulty.csv"))
    assert metrics["point_tp"] + metrics["point_fp"] + metrics["point_tn"] + metrics["point_fn"] == 360
    assert 0.0 <= metrics["window_auroc"] <= 1.0 and np.isfinite(metrics["point_f1"])
