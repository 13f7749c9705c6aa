"""`lineguard retrain` on a tiny set: the base's training config reused, reviewed frames read from old rows' blobs,
a fixed evaluation set with digests, the report files; errors as one readable line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.inference import read_metadata
from pipeline.registry.report import ComparisonReport, manifest_path, report_path
from pipeline.storage.engine import open_database
from pipeline.storage.tables import Defect
from training.data.evalset import split_normals
from training.export.metadata import update_metadata
from training.retrain import inherited_config

runner = CliRunner()
app = build_app()


@pytest.fixture(scope="module")
def base(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("base") / "base.onnx"
    args = ["--backbone", "none", "--size", "32", "--epochs", "2", "--batch-size", "4", "--name", "parts"]
    result = runner.invoke(app, ["train", str(tiny_dataset), "--out", str(out), *args, "--version", "1"])
    assert result.exit_code == 0, result.output
    return out


def reviewed_database(tiny_dataset: Path, url: str) -> None:
    """Rows as a consumer before the frame store wrote them (the frame in the row): test images reviewed."""
    _, sessions = open_database(url)
    now = datetime.now(UTC)
    frames = [(p, "rejected") for p in sorted((tiny_dataset / "test/good").iterdir())]
    frames += [
        (p, "confirmed") for kind in ("scratch", "spot") for p in sorted((tiny_dataset / "test" / kind).iterdir())
    ]
    with sessions() as session, session.begin():
        for offset, (path, status) in enumerate(frames):
            session.add(
                Defect(
                    source_topic="frames",
                    source_partition=0,
                    source_offset=offset,
                    camera_id="cam-1",
                    line_id="line-1",
                    seq=offset,
                    captured_at=now,
                    detected_at=now,
                    score=0.5,
                    threshold=0.1,
                    model_name="parts",
                    model_version="1",
                    regions=[],
                    frame_content_type="image/png",
                    frame=path.read_bytes(),
                    review_status=status,
                )
            )


def test_retrain_reuses_the_base_config_and_writes_the_report(base: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'line.db'}"
    reviewed_database(tiny_dataset, url)
    out = tmp_path / "new.onnx"
    args = ["--db", url, "--base", str(base), "--normal", str(tiny_dataset), "--out", str(out), "--epochs", "1"]
    result = runner.invoke(app, ["retrain", *args, "--version", "2"])
    assert result.exit_code == 0, result.output
    old, new = read_metadata(base), read_metadata(out)
    assert (new.model_name, new.model_version, new.architecture, new.input_size) == ("parts", "2", "cae", 32)
    for key in ("batch_size", "learning_rate", "widths", "false_alarm_rate", "val_fraction", "seed"):
        assert new.training_config[key] == old.training_config[key], key
    assert new.training_config["epochs"] == 1 and new.training_config["summary"]["epochs"] == 1
    report = ComparisonReport.read(report_path(out))
    assert report.counts == {"held_out_normal": 2, "confirmed_defect": 4, "reviewed_false_positive": 4}
    assert report.training["false_positives"] == 4 and report.training["normal_images"] == 10
    assert (report.base.model_version, report.candidate.model_version) == ("1", "2")
    assert report.candidate.image_auroc is not None and report.candidate.false_positive_rate is not None
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["digest"] == report.evaluation_digest and len(manifest["images"]) == 10
    assert all(len(image["sha256"]) == 64 for image in manifest["images"])
    # the training folder: the kept normals and the false positives (the frames' own bytes)
    trained_on = sorted(p.name for p in (out.parent / "new.onnx.data/train/good").iterdir())
    assert len(trained_on) == 14 and sum(name.startswith("defect-") for name in trained_on) == 4
    assert "# parts v2 against v1" in out.with_name("new.onnx.report.md").read_text()


def test_the_held_out_normals_are_fixed(tmp_path: Path) -> None:
    files = [tmp_path / f"{index:02d}.png" for index in range(20)]
    kept, held = split_normals(files, 0.2, seed=0)
    assert (len(kept), len(held)) == (16, 4) and not set(kept) & set(held)
    assert split_normals(list(reversed(files)), 0.2, seed=0) == (kept, held)


def test_inherited_config_names_the_backbone_and_drops_run_fields(tmp_path: Path) -> None:
    recorded = {
        "backbone": {"name": "efficientnet-lite0", "weights_sha256": "x"},
        "widths": [16, 32],
        "model": "feature-cae",
        "out": "/old/model.onnx",
        "model_version": "1",
        "labelled_val_dir": str(tmp_path / "gone"),
        "summary": {"epochs": 3},
    }
    assert inherited_config(recorded, tmp_path / "base.onnx") == {
        "backbone": "efficientnet-lite0",
        "widths": (16, 32),
        "model": "feature-cae",
        "labelled_val_dir": None,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "{tmp}/missing.onnx"], "cannot load model"),
        (["--base", "{tmp}/bare.onnx"], "carries no training_config"),
        (["--base", "{base}", "--out", "{base}"], "config field 'out'"),
        (["--base", "{base}", "--since", "yesterday"], "--since 'yesterday'"),
    ],
)
def test_retrain_errors_are_one_readable_line(
    args: list[str], message: str, base: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(base.read_bytes())
    update_metadata(bare, replace(read_metadata(base), training_config={}))
    given = [a.replace("{tmp}", str(tmp_path)).replace("{base}", str(base)) for a in args]
    defaults = {
        "--db": f"sqlite:///{tmp_path / 'line.db'}",
        "--normal": str(tiny_dataset),
        "--out": str(tmp_path / "n.onnx"),
    }
    for option, value in defaults.items():
        if option not in given:
            given += [option, value]
    command = [sys.executable, "-m", "pipeline", "retrain", *given]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
