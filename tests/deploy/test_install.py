"""One source of truth for installs: the development venv (scripts/dev.sh), the line image and the training image all
install through scripts/install.sh with deploy/constraints.txt, and the venv runs the pinned versions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
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
    assert "--constraint deploy/cuda-wheels.txt" in text and "onnxruntime-gpu[cuda,cudnn]" in text
    # both builds of one release: the line image and the venv run the GPU one, the review and training images CPU
    assert {"onnxruntime-gpu", "onnxruntime", "torch"} <= set(pins())
    assert pins()["onnxruntime"] == pins()["onnxruntime-gpu"]


def test_development_venv_runs_the_pinned_versions() -> None:
    assert version("onnxruntime-gpu") == pins()["onnxruntime-gpu"]
    # the GPU build alone: the CPU build's files would lie over its own (scripts/install.sh)
    with pytest.raises(PackageNotFoundError):
        version("onnxruntime")
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


def test_the_project_depends_on_the_cpu_build_and_the_line_extra_on_the_gpu_build() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda requirements: {re.match(r"[\w.-]+", r).group(0).lower() for r in requirements}  # noqa: E731
    assert "onnxruntime" in names(project["dependencies"]) and "onnxruntime-gpu" not in names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert names(extras["line"]) == {"onnxruntime-gpu"}
    assert all("onnxruntime" not in names(requirements) for requirements in extras.values())
    assert not {"python-multipart", "onnxscript"} & set().union(
        *map(names, [project["dependencies"], *extras.values()])
    )


FAKE_PIP = """
import json, os, sys
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "show":
    sys.exit(0 if os.environ.get("FAKE_PIP_HAS_CPU_BUILD") else 1)
"""


def pip_calls(tmp_path: Path, target: str, has_cpu_build: bool = False) -> list[list[str]]:
    """The pip commands `scripts/install.sh TARGET` runs, recorded by a stand-in for pip."""
    fake = tmp_path / "fake_pip.py"
    fake.write_text(FAKE_PIP)
    log = tmp_path / f"{target}-{'cpu' if has_cpu_build else 'clean'}.log"
    env = {**os.environ, "PIP": f"{sys.executable} {fake}", "PYTHON": sys.executable, "FAKE_PIP_LOG": str(log)}
    env.pop("FAKE_PIP_HAS_CPU_BUILD", None)
    if has_cpu_build:
        env["FAKE_PIP_HAS_CPU_BUILD"] = "1"
    subprocess.run(["bash", str(INSTALL), target], env=env, check=True, timeout=60)
    return [json.loads(line) for line in log.read_text().splitlines()]


def requirement_names(call: list[str]) -> set[str]:
    return {re.match(r"[\w.-]+", arg).group(0).lower() for arg in call[1:] if not arg.startswith("-")}


def test_the_line_image_installs_the_gpu_build_without_the_cpu_build(tmp_path: Path) -> None:
    requirements, project, show = pip_calls(tmp_path, "line")
    assert requirements[0] == "install" and "onnxruntime-gpu[cuda,cudnn]" in requirements
    assert "onnxruntime" not in requirement_names(requirements)
    assert {"kafka-python", "psycopg", "onnxruntime-gpu"} <= requirement_names(requirements)
    assert "torch" not in requirement_names(requirements)
    assert "deploy/cuda-wheels.txt" in requirements and project[-2:] == ["--no-deps", "."]
    assert show[:1] == ["show"]
    assert "! pip show --quiet onnxruntime" in (ROOT / "deploy" / "Dockerfile.line").read_text()


def test_the_development_venv_runs_the_gpu_build_and_mends_a_cpu_build_installed_by_hand(tmp_path: Path) -> None:
    calls = pip_calls(tmp_path, "dev")
    assert f"torch=={pins()['torch']}" in calls[0]
    names = requirement_names(calls[1])
    assert {"onnxruntime-gpu", "torch", "pytest", "fastapi", "import-linter"} <= names and "onnxruntime" not in names
    assert calls[2][-2:] == ["--no-deps", "--editable=."] and calls[3][0] == "show" and len(calls) == 4
    *_, uninstall, reinstall = pip_calls(tmp_path, "dev", has_cpu_build=True)
    assert uninstall[:1] == ["uninstall"] and uninstall[-1] == "onnxruntime"
    assert "--force-reinstall" in reinstall and f"onnxruntime-gpu=={pins()['onnxruntime-gpu']}" in reinstall


def test_the_review_and_training_images_take_the_cpu_build(tmp_path: Path) -> None:
    assert pip_calls(tmp_path, "review") == [
        ["install", "--quiet", "--constraint", "deploy/constraints.txt", ".[postgres,review]"]
    ]
    assert pip_calls(tmp_path, "train")[-1][-1] == ".[train,postgres]"
