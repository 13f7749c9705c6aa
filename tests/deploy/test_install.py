"""One source of truth for installs: the development venv (scripts/dev.sh), the line image and the training image all
install through scripts/install.sh with deploy/constraints.txt, and the venv runs the pinned versions."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.deploy.files import ROOT, compose, load_module

INSTALL = ROOT / "scripts" / "install.sh"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"


CUDA_WHEELS = ROOT / "deploy" / "cuda-wheels.txt"


def pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    return dict(re.findall(r"^([\w.-]+)==(\S+)$", path.read_text(), re.M))


def install_targets() -> set[str]:
    return set(re.findall(r"^    (\w+)\) ", INSTALL.read_text(), re.M))


def pip_installs(text: str) -> list[str]:
    """Lines that call pip install, apart from upgrading pip itself."""
    return [line for line in text.splitlines() if "pip" in line and " install" in line and "--upgrade pip" not in line]


def test_every_install_goes_through_install_sh() -> None:
    targets = install_targets()
    assert {"dev", "line", "review", "train"} <= targets
    dev = (ROOT / "scripts" / "dev.sh").read_text()
    assert "scripts/install.sh dev" in dev and not pip_installs(dev)
    line = (ROOT / "deploy" / "Dockerfile.line").read_text()
    train = (ROOT / "deploy" / "Dockerfile.train").read_text()
    assert re.search(r"^ARG INSTALL=line$", line, re.M) and 'scripts/install.sh "$INSTALL"' in line
    assert "scripts/install.sh train" in train
    for dockerfile in (line, train):
        assert not pip_installs(dockerfile), "a Dockerfile installs packages itself instead of through install.sh"
        # what install.sh reads is in the image before it runs
        assert "COPY deploy/constraints.txt" in dockerfile and "COPY scripts/install.sh scripts/" in dockerfile
    # compose builds the review and tools images from Dockerfile.line with targets install.sh knows
    for service in compose()["services"].values():
        build = service.get("build") or {}
        if build.get("dockerfile") == "deploy/Dockerfile.line":
            assert build.get("args", {}).get("INSTALL", "line") in targets


def test_install_sh_pins_every_install() -> None:
    text = INSTALL.read_text()
    assert '--constraint "$CONSTRAINTS"' in text and "CONSTRAINTS=deploy/constraints.txt" in text
    assert re.findall(r'pip_install "\$\(pin torch\)"; pip_install', text), "torch goes in first, pinned"
    # the CUDA and cuDNN wheels of the pinned build, held to their own pins
    assert "line) pip_install --constraint deploy/cuda-wheels.txt" in text and "onnxruntime-gpu[cuda,cudnn]" in text
    assert {"onnxruntime-gpu", "torch"} <= set(pins())


def test_development_venv_runs_the_pinned_versions() -> None:
    assert version("onnxruntime-gpu") == pins()["onnxruntime-gpu"]
    try:
        torch_version = version("torch")
    except Exception:  # a line-only install has no torch
        pytest.skip("torch not installed")
    assert torch_version.split("+")[0] == pins()["torch"]


def test_line_image_checks_the_cuda_libraries_of_the_pinned_build() -> None:
    gpu_libs = load_module("deploy/gpu_libs.py")
    from onnxruntime.capi.build_and_package_info import cuda_version

    names = gpu_libs.wanted_libraries()
    assert f"libcudart.so.{cuda_version.split('.')[0]}" in names and "libcudnn.so.9" in names
    assert "deploy/gpu_libs.py --register" in (ROOT / "deploy" / "Dockerfile.line").read_text()


def test_pinned_cuda_wheels_are_the_ones_the_onnxruntime_build_asks_for() -> None:
    from importlib.metadata import requires

    from onnxruntime.capi.build_and_package_info import cuda_version
    from packaging.requirements import Requirement

    pinned = pins(CUDA_WHEELS)
    asked = [Requirement(text) for text in requires("onnxruntime-gpu") or []]
    wheels = [r for r in asked if r.marker and any(r.marker.evaluate({"extra": e}) for e in ("cuda", "cudnn"))]
    assert wheels, "onnxruntime-gpu no longer names its CUDA wheels in the cuda/cudnn extras"
    for requirement in wheels:
        assert requirement.name in pinned, f"{requirement.name} (onnxruntime-gpu[cuda,cudnn]) is not pinned"
        assert requirement.specifier.contains(pinned[requirement.name]), f"{requirement} vs {pinned[requirement.name]}"
    major = cuda_version.split(".")[0]
    assert pinned["nvidia-cuda-runtime"].split(".")[0] == major
    assert pinned[f"nvidia-cudnn-cu{major}"].startswith("9.")
