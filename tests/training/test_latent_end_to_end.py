"""A real vae trained by `lineguard train --encoder-only-out`: the encoder and decoder files it leaves drive
`lineguard generate` (samples, interpolation) through onnxruntime, and the encoder matches torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.latent.contract import read_props
from pipeline.latent.runtime import Encoder
from pipeline.preprocess import read_image

runner = CliRunner()


@pytest.fixture(scope="module")
def vae(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vae") / "parts.onnx"
    args = ["train", str(tiny_dataset), "--out", str(out), "--model", "vae", "--backbone", "none", "--size", "32"]
    args += ["--epochs", "2", "--batch-size", "4", "--encoder-only-out", str(out.with_name("parts.encoder.onnx"))]
    result = runner.invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_encoder_and_decoder_of_one_model(vae: Path) -> None:
    encoder, decoder = read_props(vae.with_name("parts.encoder.onnx")), read_props(vae.with_name("parts.decoder.onnx"))
    assert (encoder["kind"], decoder["kind"]) == ("encoder", "decoder")
    assert encoder["latent_size"] == decoder["latent_size"]  # the encoder's code is what the decoder takes
    assert encoder["model_version"] == decoder["model_version"]
    assert int(encoder["embedding_size"]) == 2 * json.loads(encoder["latent_shape"])[0]


def test_generate_samples_and_interpolates_with_the_trained_vae(vae: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    app = build_app()
    sampled = runner.invoke(app, ["generate", str(vae), "--count", "3", "--out", str(tmp_path / "samples")])
    assert sampled.exit_code == 0, sampled.output
    images = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "samples").glob("*.png"))]
    assert len(images) == 3 and all(image.shape == (32, 32) for image in images)
    first, second = sorted((tiny_dataset / "train" / "good").glob("*.png"))[:2]
    args = ["generate", str(vae), "--interpolate", str(first), str(second), "--steps", "5", "--out", str(tmp_path)]
    strip = runner.invoke(app, args)
    assert strip.exit_code == 0, strip.output
    assert cv2.imread(json.loads(strip.output)["strip"]).shape[:2] == (32, 5 * 32 + 4 * 2)
    # the line-side encoder embeds files of any size the way training preprocessed them
    embeddings = Encoder(vae, prefer_gpu=False).embed([read_image(first), read_image(second)])
    assert embeddings.shape == (2, int(read_props(vae.with_name("parts.encoder.onnx"))["embedding_size"]))


def test_export_encoder_rebuilds_the_same_encoder_from_the_checkpoint(vae: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.encoder.onnx"
    result = runner.invoke(build_app(), ["export-encoder", str(vae), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frames = [np.random.default_rng(i).integers(0, 256, (48, 40), dtype=np.uint8) for i in range(3)]
    kept = Encoder(vae.with_name("parts.encoder.onnx"), prefer_gpu=False).embed(frames)
    rebuilt = Encoder(out, prefer_gpu=False).embed(frames)
    assert np.abs(kept - rebuilt).max() < 1e-5


def test_export_encoder_refuses_a_checkpoint_of_another_model(vae: Path, tmp_path: Path) -> None:
    model = tmp_path / "other.onnx"
    shutil.copy(vae, model)
    state = torch.load(vae.with_suffix(".ckpt.pt"), weights_only=True)
    torch.save(
        {key: value + 0.5 if value.is_floating_point() else value for key, value in state.items()},
        model.with_suffix(".ckpt.pt"),
    )
    result = runner.invoke(build_app(), ["export-encoder", str(model)])
    assert result.exit_code == 1
    assert "other.ckpt.pt does not reproduce other.onnx" in str(result.exception)
    missing = runner.invoke(build_app(), ["export-encoder", str(vae.with_name("parts.decoder.onnx"))])
    assert missing.exit_code == 1


def test_cvae_generates_per_condition_and_refuses_an_unknown_one(tiny_dataset: Path, tmp_path: Path) -> None:
    good = tmp_path / "parts" / "train" / "good"
    for index, image in enumerate(sorted((tiny_dataset / "train" / "good").glob("*.png"))):
        (good / ("cam-a" if index % 2 else "cam-b")).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, good / ("cam-a" if index % 2 else "cam-b") / image.name)
    model = tmp_path / "cvae.onnx"
    args = ["train", str(tmp_path / "parts"), "--out", str(model), "--model", "cvae", "--backbone", "none"]
    args += ["--size", "32", "--epochs", "1", "--batch-size", "4"]
    app = build_app()
    assert runner.invoke(app, args).exit_code == 0
    for condition in ("cam-a", "cam-b"):
        result = runner.invoke(
            app, ["generate", str(model), "--count", "2", "--condition", condition, "--out", str(tmp_path / condition)]
        )
        assert result.exit_code == 0, result.output
    first, second = (cv2.imread(str(tmp_path / c / "sample_0000.png")) for c in ("cam-a", "cam-b"))
    assert first.shape == second.shape == (32, 32, 3) and not np.array_equal(first, second)
    unknown = runner.invoke(app, ["generate", str(model), "--condition", "cam-z", "--out", str(tmp_path / "z")])
    assert unknown.exit_code == 1 and str(unknown.exception) == "unknown condition 'cam-z'; known: cam-a, cam-b"
