"""The `lineguard` console script where only the runtime is installed (the line image): no torch, no `training`.

Two ways: this environment with torch and `training` blocked from import, and a real install of a copy of the
runtime (pyproject + pipeline/ without pipeline/dev, as deploy/Dockerfile.line builds it) run without the
development virtualenv's site hooks. Either way the commands registered through the `lineguard.commands`
entry-point group for the missing packages are left out with a one-line note, and the runtime's own work.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO_ROOT

RUNTIME_COMMANDS = {"cluster", "consume", "db", "defects", "frames", "generate", "inspect-model", "models", "review"}
DEV_COMMANDS = {"broker", "simulate"}
TRAINING_COMMANDS = {
    "train",
    "train-sensors",
    "evaluate",
    "retrain",
    "architectures",
    "demo",
    "export-encoder",
    "quantize",
}

# The child: makes the `blocked` top-level packages unimportable, puts an install folder (`site`) first when
# given, then runs the console script: "entry-point" loads it from the distribution's metadata.
RUNNER = """
import importlib.abc, runpy, sys

blocked, site, libraries, script, *args = sys.argv[1:]


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked.split(","):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocked())
if site:  # a real install: its folder first, the virtualenv's libraries after it, no .pth hooks (python -S)
    sys.path[:0] = [site]
    sys.path.append(libraries)
    import pipeline

    assert pipeline.__file__.startswith(site), pipeline.__file__
if script == "entry-point":
    from importlib.metadata import entry_points

    [console] = entry_points(group="console_scripts", name="lineguard")
    sys.argv = ["lineguard", *args]
    console.load()()
else:
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
"""


def run(*argv: str, python_flags: tuple[str, ...] = (), cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *python_flags, "-c", RUNNER, *argv]
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def listed_commands(help_text: str) -> set[str]:
    return set(re.findall(r"^│ ([a-z][a-z-]*)\s{2,}", help_text, flags=re.MULTILINE))


def test_entry_point_without_torch_or_training(tmp_path: Path) -> None:
    done = run("torch,training", "", "", "entry-point", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert listed_commands(done.stdout) == RUNTIME_COMMANDS | DEV_COMMANDS
    notes = [line.strip() for line in done.stdout.splitlines() if "Not installed here" in line]
    assert notes == ["Not installed here: training commands (no training)."]


def test_a_full_install_lists_every_command(tmp_path: Path) -> None:
    done = run("", "", "", "entry-point", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert listed_commands(done.stdout) == RUNTIME_COMMANDS | DEV_COMMANDS | TRAINING_COMMANDS
    assert "Not installed here" not in done.stdout


def test_inspect_model_without_torch_or_training(tmp_path: Path, tiny_model: Path) -> None:
    done = run("torch,training", "", "", "entry-point", "inspect-model", str(tiny_model), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model_name"] == "tiny-blur"


@pytest.mark.slow
def test_a_runtime_only_install(tmp_path: Path, tiny_model: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "dev")  # the line image leaves the development tools out
    shutil.copytree(REPO_ROOT / "pipeline", source / "pipeline", ignore=ignore)
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*install, "--target", str(site), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    script = str(site / "bin" / "lineguard")
    libraries = sysconfig.get_paths()["purelib"]

    def lineguard(*args: str) -> subprocess.CompletedProcess[str]:
        return run("torch", str(site), libraries, script, *args, python_flags=("-S",), cwd=tmp_path)

    shown = lineguard("--help")
    assert shown.returncode == 0, shown.stderr
    assert listed_commands(shown.stdout) == RUNTIME_COMMANDS
    assert "Not installed here: dev, training commands (no pipeline.dev, training)." in shown.stdout
    inspected = lineguard("inspect-model", str(tiny_model), "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["model_version"] == "1"
    # the Alembic migrations ship as package data: a new database is created from the installed copy
    listed = lineguard("defects", "list", "--db", f"sqlite:///{tmp_path / 'line.db'}", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
