"""The layout's rules are import-linter contracts in pyproject.toml; this runs them, so that `pytest` alone checks them.

scripts/dev.sh test (and so CI) runs `lint-imports` itself too, next to `ruff check`.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO_ROOT, subprocess_env

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_contracts_name_the_rules() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(config["root_packages"]) == {"pipeline", "training"}
    kinds = {contract["id"]: contract["type"] for contract in config["contracts"]}
    assert kinds["pipeline-layers"] == kinds["training-layers"] == "layers" and kinds["no-cycles"] == "acyclic_siblings"
    rules = {"runtime-without-training", "runtime-without-dev-tools", "cli-on-top", "commands-on-top", "storage-alone"}
    assert rules <= kinds.keys()


def test_import_contracts_are_kept() -> None:
    assert LINT_IMPORTS.exists(), "import-linter is not installed: pip install -e '.[dev]'"
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
