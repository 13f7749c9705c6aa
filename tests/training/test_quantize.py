"""`lineguard quantize` on a real (tiny) trained model: a real INT8 file, its contract, its own thresholds, the line's
OnnxModel scoring it, and the command's errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli.app import build_app, main
from pipeline.errors import ConfigError
from pipeline.inference import OnnxModel, read_metadata
from tests.training.test_models import tiny_metadata
from training.config import TrainConfig
from training.data.images import list_images, load_images, split_validation
from training.data.synthetic_set import write_synthetic_dataset
from training.evaluation.calibrate import budget_threshold
from training.export.contract import ScoringGraph, export_onnx
from training.export.quantize import Parity, QuantizeConfig, compared_with_stored, quantize, scoring_tail, to_int8
from training.models import create_model
from training.train import train

runner = CliRunner()
HOLDOUT = 0.25  # 10 of the 40 normals: enough for a correlation and a threshold


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quantize") / "parts"
    return write_synthetic_dataset(root, n_train=40, n_test_good=6, n_test_defect=6, size=64, seed=3)


@pytest.fixture(scope="module")
def fp32_model(parts: Path) -> Path:
    cfg = TrainConfig(
        data_dir=parts,
        out=parts.parent / "parts.onnx",
        size=32,
        epochs=2,
        batch_size=8,
        val_fraction=HOLDOUT,
        model_name="parts",
        model_version="7",
        show_progress=False,
    )
    return train(cfg)


@pytest.fixture(scope="module")
def quantized(fp32_model: Path, parts: Path) -> tuple[Path, Parity]:
    out = fp32_model.with_name("parts.int8.onnx")
    cfg = QuantizeConfig(fp32_model, parts, out, validation_dir=parts, calibration_images=16, speed_rounds=1)
    return out, quantize(cfg)


def held_out_normals(parts: Path, size: int) -> np.ndarray:
    files = list_images(parts / "train" / "good")
    spec = read_metadata(parts.parent / "parts.onnx").input_spec
    assert spec.size == size
    return load_images([files[i] for i in split_validation(len(files), HOLDOUT, 0)[1]], spec)


def test_the_contract_is_carried_over_with_the_new_precision(fp32_model: Path, quantized: tuple[Path, Parity]) -> None:
    before, after = read_metadata(fp32_model), read_metadata(quantized[0])
    assert (before.precision, after.precision) == ("fp32", "int8")
    assert (after.model_name, after.model_version) == ("parts", "7-int8")  # the registry keeps one file per version
    assert after.created_at >= before.created_at
    conversion = after.training_config.pop("conversion")
    assert conversion["source_version"] == "7" and len(conversion["source_sha256"]) == 64
    for field in ("architecture", "input_size", "input_channels", "resize_mode", "train_data_digest", "normalization"):
        assert getattr(after, field) == getattr(before, field), field
    assert after.training_config == before.training_config  # retraining from the int8 file trains the same model


def test_weights_are_int8_and_the_scoring_tail_stays_float(fp32_model: Path, quantized: tuple[Path, Parity]) -> None:
    proto = onnx.load(str(quantized[0]))
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 10  # the backbone's and the autoencoder's convolutions
    dequantized = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    tail = set(scoring_tail(onnx.load(str(fp32_model))))
    tail_nodes = [n for n in proto.graph.node if n.name in tail]
    assert {n.op_type for n in tail_nodes} >= {"Sub", "ReduceMax"}
    # the error of features and reconstruction, its blur and its maximum read float tensors, never rounded copies
    assert all(not dequantized.intersection(n.input) for n in tail_nodes)


def feature_cae_file(path: Path, code_memory: int) -> Path:
    """A tiny feature-cae fitted on a few normals, its map with the memory of normal codes where it has one."""
    torch.manual_seed(0)
    model = create_model("feature-cae", 1, image_size=64, code_memory=code_memory).eval()
    model.fit_scoring(model.extract(torch.rand(6, 1, 64, 64) * 0.2 + 0.4))
    model.use_scoring(model.scoring_options()[-1])
    metadata = replace(tiny_metadata("feature-cae", 1), input_size=64)
    export_onnx(ScoringGraph(model, score_pool=5), metadata, path)
    return path


def test_what_the_map_compares_with_a_memory_of_codes_stays_float(parts: Path, tmp_path: Path) -> None:
    """A memory of normal codes is float; the codes it is compared with come from the encoder, which stays float in
    the int8 file (rounded codes put magnetic tile's default model at 0.656 image AUROC, from 0.940)."""
    plain = onnx.load(str(feature_cae_file(tmp_path / "plain.onnx", code_memory=0)))
    assert compared_with_stored(plain, scoring_tail(plain)) == []
    source = feature_cae_file(tmp_path / "memory.onnx", code_memory=16)
    proto = onnx.load(str(source))
    kept = compared_with_stored(proto, scoring_tail(proto))
    encoder = [n.name for n in proto.graph.node if "/encoder/" in n.name]
    assert sorted(kept) == sorted(encoder) and {n.split("/")[-1] for n in kept} == {"Conv", "Relu"}

    out = tmp_path / "memory.int8.onnx"
    calibration = np.random.default_rng(1).random((8, 1, 64, 64), dtype=np.float32) * 0.2 + 0.4
    to_int8(source, out, calibration, QuantizeConfig(source, parts, out, calibration_images=8))
    quantised = onnx.load(str(out))
    dequantized = {n.output[0] for n in quantised.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in quantised.graph.node if n.op_type == "Conv"]
    assert any(dequantized.intersection(n.input) for n in convs)  # the backbone is int8
    encoder_convs = [n for n in convs if "/encoder/" in n.name]
    # their input and weights are float (a zero bias may be shared with an int8 convolution's in this untrained model)
    assert len(encoder_convs) == 2 and all(not dequantized.intersection(n.input[:2]) for n in encoder_convs)


def test_thresholds_come_from_the_int8_files_own_scores(
    fp32_model: Path, parts: Path, quantized: tuple[Path, Parity]
) -> None:
    before, after = read_metadata(fp32_model), read_metadata(quantized[0])
    normals = held_out_normals(parts, before.input_size)
    scores = OnnxModel(quantized[0], prefer_gpu=False).score_in_chunks(normals).score
    assert after.image_score_stats.n == len(normals) == before.image_score_stats.n
    assert after.image_score_stats.mean == pytest.approx(float(scores.mean()), rel=1e-5)
    assert after.image_threshold == pytest.approx(budget_threshold(scores, 1e-3, seed=0).threshold, rel=1e-6)
    assert after.image_threshold != before.image_threshold
    assert after.pixel_threshold != before.pixel_threshold
    assert after.false_alarm is not None and after.false_alarm.rate == before.false_alarm.rate  # type: ignore[union-attr]


def test_the_lines_model_scores_and_restores_an_int8_file(fp32_model: Path, quantized: tuple[Path, Parity]) -> None:
    model = OnnxModel(quantized[0], prefer_gpu=False)
    model.warm_up(4)
    assert [o.name for o in model.session.get_outputs()] == ["anomaly_map", "score"]  # the scoring cut holds
    batch = np.random.default_rng(0).random((5, model.metadata.input_channels, 32, 32), dtype=np.float32)
    scores = model.score(batch)
    assert scores.score.shape == (5,) and scores.anomaly_map.shape == (5, 1, 32, 32)
    assert np.isfinite(scores.score).all() and np.isfinite(scores.anomaly_map).all()
    assert model.restore(batch[:2]).shape == (2, model.metadata.input_channels, 32, 32)
    # int8 approximates the original: the same scores to within a fraction of their spread
    original = OnnxModel(fp32_model, prefer_gpu=False).score(batch).score
    assert not np.array_equal(scores.score, original)
    assert np.abs(scores.score - original).max() < 0.5 * np.abs(original).max()


def test_parity_is_reported(quantized: tuple[Path, Parity]) -> None:
    parity = quantized[1]
    assert parity.model_version == "7-int8" and parity.n_normals == 10
    assert -1.0 <= parity.normal_correlation <= 1.0
    assert parity.image_auroc is not None and all(0.0 <= v <= 1.0 for v in parity.image_auroc)
    assert parity.pixel_auroc is not None and None not in parity.pixel_auroc
    assert parity.frames_per_second is not None and min(parity.frames_per_second) > 0
    assert json.loads(json.dumps(parity.to_dict()))["speedup"] == pytest.approx(parity.speedup)


def test_cli_writes_the_file_and_inspect_model_shows_its_precision(
    fp32_model: Path, parts: Path, tmp_path: Path
) -> None:
    app = build_app()
    out = tmp_path / "cli.int8.onnx"
    args = ["quantize", str(fp32_model), "--calibration", str(parts), "--out", str(out), "--calibration-images", "8"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["model_version"] == "7-int8"
    shown = runner.invoke(app, ["inspect-model", str(out), "--json"])
    assert json.loads(shown.stdout)["precision"] == "int8"
    table = runner.invoke(app, ["inspect-model", str(out)], env={"COLUMNS": "200"})
    rows = [[cell.strip() for cell in line.split("│")[1:3]] for line in table.stdout.splitlines()]
    assert ["precision", "int8"] in rows, table.stdout


def test_fp16_files_come_from_the_same_command(fp32_model: Path, parts: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts.fp16.onnx"
    parity = quantize(QuantizeConfig(fp32_model, parts, out, precision="fp16", calibration_images=8, speed_rounds=0))
    meta = read_metadata(out)
    assert (meta.precision, meta.model_version, parity.model_version) == ("fp16", "7-fp16", "7-fp16")
    weights = [t for t in onnx.load(str(out)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert weights, "no float16 weights"
    assert parity.normal_correlation > 0.99  # half precision on the CPU provider: the same scores, nearly
    assert meta.image_threshold != read_metadata(fp32_model).image_threshold  # its own scores


def test_only_fp32_image_models_are_converted(quantized: tuple[Path, Parity], parts: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="converts fp32 models; this one is int8"):
        quantize(QuantizeConfig(quantized[0], parts, tmp_path / "again.onnx"))
    with pytest.raises(ConfigError, match="precision"):
        replace(QuantizeConfig(quantized[0], parts, tmp_path / "x.onnx"), precision="int4")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.onnx", "--calibration", "{data}"], "file not found"),
        (["{tmp}/corrupt.onnx", "--calibration", "{data}"], "not a readable ONNX file"),
        (["{model}", "--calibration", "{tmp}/empty"], "expected an MVTec-layout folder"),
        (["{model}", "--calibration", "{data}", "--precision", "int4"], "config field 'precision' = 'int4'"),
    ],
)
def test_cli_errors_are_one_readable_line(
    args: list[str],
    message: str,
    fp32_model: Path,
    parts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "corrupt.onnx").write_bytes(b"\x00garbage")
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, data=parts, model=fp32_model) for a in args]
    # the entry point itself (in process: a subprocess per case costs seconds of imports); anything but a
    # LineGuardError or ValueError would escape it as a traceback and fail here
    monkeypatch.setattr(sys, "argv", ["lineguard", "quantize", *argv, "--out", str(tmp_path / "out.onnx")])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "out.onnx").exists()


def test_the_quantizer_loads_no_torch() -> None:
    # a line PC quantises its own model without the training stack's heaviest part
    code = "import sys, training.export.quantize; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_the_fallbacks_for_older_files_are_trainings_defaults() -> None:
    """A file without these in its training config was trained with the defaults of its day: today's TrainConfig's
    (the quantiser keeps its own copies only because training.config imports torch)."""
    from training.export.quantize import DEFAULT_FALSE_ALARM_RATE, DEFAULT_HOLDOUT

    defaults = TrainConfig.__pydantic_fields__
    assert defaults["val_fraction"].default == DEFAULT_HOLDOUT
    assert defaults["false_alarm_rate"].default == DEFAULT_FALSE_ALARM_RATE
