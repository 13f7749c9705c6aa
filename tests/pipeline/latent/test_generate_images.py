"""`lineguard generate`: samples from a decoder ONNX, conditions checked against its vocabulary, interpolations."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
from latent_factory import SIZE, build_decoder, build_encoder
from typer.testing import CliRunner

from pipeline.cli.app import build_app

STEPS = 6


def generate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), ["generate", *args])
    return result.exit_code, result.output, str(result.exception) if result.exception else ""


def test_samples_are_written_as_pngs(tmp_path: Path) -> None:
    decoder = build_decoder(tmp_path / "tiny.decoder.onnx")
    code, output, _ = generate(str(decoder), "--count", "5", "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert json.loads(output)["written"] == 5
    files = sorted((tmp_path / "out").glob("sample_*.png"))
    assert len(files) == 5
    images = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files]
    assert all(image.shape == (SIZE, SIZE) and image.dtype == np.uint8 for image in images)
    assert not np.array_equal(images[0], images[1])  # different draws from N(0, I)


def test_scoring_model_finds_its_decoder_beside_it(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "line.onnx"
    shutil.copy(tiny_model, model)
    code, _, error = generate(str(model), "--count", "1", "--out", str(tmp_path / "out"))
    assert code == 1 and "has no decoder beside it (line.decoder.onnx)" in error
    build_decoder(tmp_path / "line.decoder.onnx")
    code, output, _ = generate(str(model), "--count", "2", "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


def test_conditions_come_from_the_vocabulary(tmp_path: Path) -> None:
    decoder = build_decoder(tmp_path / "tiny.decoder.onnx", conditions=("cam-a", "cam-b"))
    for name in ("cam-a", "cam-b"):
        code, output, _ = generate(str(decoder), "--count", "1", "--condition", name, "--out", str(tmp_path / name))
        assert code == 0, output
    first, second = (
        cv2.imread(str(tmp_path / n / "sample_0000.png"), cv2.IMREAD_UNCHANGED) for n in ("cam-a", "cam-b")
    )
    assert second.mean() > first.mean()  # the same latent, a different condition
    code, _, error = generate(str(decoder), "--condition", "cam-z", "--out", str(tmp_path / "z"))
    assert code == 1 and error == "unknown condition 'cam-z'; known: cam-a, cam-b"
    assert not (tmp_path / "z").exists()
    plain = build_decoder(tmp_path / "plain.decoder.onnx")
    code, _, error = generate(str(plain), "--condition", "cam-a", "--out", str(tmp_path / "p"))
    assert code == 1 and "not conditional" in error


def test_interpolation_strip_runs_between_the_two_codes(tmp_path: Path) -> None:
    decoder = build_decoder(tmp_path / "tiny.decoder.onnx")
    build_encoder(tmp_path / "tiny.encoder.onnx")  # found beside the decoder
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    cv2.imwrite(str(dark), np.full((50, 70), 30, np.uint8))
    cv2.imwrite(str(bright), np.full((50, 70), 220, np.uint8))
    args = ["--interpolate", str(dark), str(bright), "--steps", str(STEPS), "--out", str(tmp_path / "out")]
    code, output, _ = generate(str(decoder), *args)
    assert code == 0, output
    strip = cv2.imread(json.loads(output)["strip"], cv2.IMREAD_GRAYSCALE)
    assert strip.shape == (SIZE, STEPS * SIZE + (STEPS - 1) * 2)
    means = [strip[:, i * (SIZE + 2) : i * (SIZE + 2) + SIZE].mean() for i in range(STEPS)]
    assert all(a < b for a, b in itertools.pairwise(means))  # dark to bright, step by step
    # the ends are the decoder's images of each input's own code: sigmoid(30/255) and sigmoid(220/255)
    assert abs(means[0] - 255 / (1 + np.exp(-30 / 255))) < 1.5
    assert abs(means[-1] - 255 / (1 + np.exp(-220 / 255))) < 1.5
