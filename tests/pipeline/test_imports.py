"""The line runtime never imports torch: checked in a fresh interpreter for the package and every submodule."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

from conftest import REPO_ROOT, subprocess_env

import pipeline


def all_submodules() -> list[str]:
    modules = pkgutil.walk_packages(pipeline.__path__, prefix="pipeline.")
    return sorted(m.name for m in modules if not m.name.endswith("__main__"))


def test_pipeline_imports_no_torch() -> None:
    modules = ["pipeline", *all_submodules()]
    assert "pipeline.consumer" in modules and "pipeline.cli.app" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
