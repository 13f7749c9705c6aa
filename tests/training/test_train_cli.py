"""End to end on a tiny synthetic set: `lineguard train`, `evaluate`, `inspect-model`, and CLI errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.inference import OnnxModel, read_metadata
from training.data.images import load_test_set
from training.evaluation.detection_metrics import threshold_metrics

runner = CliRunner()
app = build_app()


@pytest.fixture(scope="module")
def trained_model(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny_dataset),
            "--out",
            str(out),
            "--size",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--version",
            "7",
            "--name",
            "parts",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_calibrated_model(trained_model: Path, tiny_dataset: Path) -> None:
    metadata = read_metadata(trained_model)
    assert (metadata.model_name, metadata.model_version, metadata.architecture) == (
        "parts",
        "7",
        "feature-cae",
    )
    assert (metadata.input_size, metadata.input_channels) == (32, 1)
    assert metadata.image_threshold > metadata.image_score_stats.quantiles["0.5"]
    assert metadata.training_config["summary"]["epochs"] == 2
    assert len(metadata.train_data_digest) == 64
    assert trained_model.with_suffix(".ckpt.pt").is_file()


def test_evaluate_json_and_report(trained_model: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["evaluate", str(trained_model), str(tiny_dataset), "--json", "--report", str(tmp_path / "report")]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"image_auroc", "pixel_auroc", "aupro", "f1", "threshold", "n_good", "n_defect"} <= metrics.keys()
    assert (metrics["n_good"], metrics["n_defect"]) == (4, 4)
    assert 0.0 <= metrics["image_auroc"] <= 1.0
    for name in ("metrics.json", "roc.png", "scores.png", "overlays.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0


def test_inspect_model_json(trained_model: Path) -> None:
    result = runner.invoke(app, ["inspect-model", str(trained_model), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_version"] == "7"


def test_the_threshold_comes_from_the_false_alarm_budget(trained_model: Path) -> None:
    budget = read_metadata(trained_model).false_alarm
    assert budget is not None and budget.rate == 1e-3
    # a handful of held-out normals cannot carry a tail for one in a thousand: the model says so
    assert budget.warning is not None and "needs at least" in budget.warning
    result = runner.invoke(app, ["inspect-model", str(trained_model)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "budget 0.001 per frame" in result.stdout and "held-out normal scores" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{tmp}/nowhere", "--out", "{tmp}/m.onnx"], "expected an MVTec-layout folder"),
        (["train", "{tmp}", "--out", "{tmp}/m.onnx", "--model", "nope"], "unknown model 'nope'"),
        (["train", "{tmp}", "--out", "{tmp}/m.onnx", "--size", "50"], "config field 'size' = 50"),
        (["evaluate", "{tmp}/missing.onnx", "{tmp}"], "cannot load model"),
        (["inspect-model", "{tmp}/corrupt.onnx"], "not a readable ONNX file"),
    ],
)
def test_cli_errors_are_one_readable_line(args: list[str], message: str, tiny_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "corrupt.onnx").write_bytes(b"\x00garbage")
    for index in range(4):
        (tmp_path / f"{index}.png").write_bytes((tiny_dataset / "train/good/0000.png").read_bytes())
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = subprocess.run([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_building_the_cli_loads_no_torch() -> None:
    # `lineguard consume` on a line machine must not pay for (or need) the training stack
    code = "import sys; from pipeline.cli.app import build_app; build_app(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_labelled_validation_set_sets_an_f1_optimal_threshold(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "f1.onnx"
    args = ["train", str(tiny_dataset), "--out", str(out), "--size", "32", "--epochs", "2", "--batch-size", "4"]
    result = runner.invoke(app, [*args, "--val-dir", str(tiny_dataset)])
    assert result.exit_code == 0, result.output
    model = OnnxModel(out)
    labelled = load_test_set(tiny_dataset, model.metadata.input_spec)
    scores = model.score(labelled.images).score
    threshold = model.metadata.image_threshold
    # no other threshold gives a better F1 on the labelled set it was chosen on
    best = max(threshold_metrics(scores, labelled.labels, t)["f1"] for t in np.concatenate([scores - 1e-6, scores]))
    assert threshold_metrics(scores, labelled.labels, threshold)["f1"] == pytest.approx(best)


def test_evaluate_without_masks_reports_no_pixel_metrics(
    trained_model: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "no_masks"
    shutil.copytree(tiny_dataset / "test", copy / "test")
    result = runner.invoke(app, ["evaluate", str(trained_model), str(copy), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["pixel_auroc"] is None and metrics["aupro"] is None
    assert metrics["image_auroc"] is not None
