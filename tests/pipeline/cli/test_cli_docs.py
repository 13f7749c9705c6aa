"""docs/CLI.md is what `scripts/cli_docs.py` writes from the app, and names every command `lineguard --help` lists."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys

import pytest
import typer
from conftest import REPO_ROOT, subprocess_env
from typer.testing import CliRunner

from pipeline.cli.app import build_app

CLI_MD = REPO_ROOT / "docs" / "CLI.md"
REGENERATE = ".venv/bin/python scripts/cli_docs.py"


def generated() -> str:
    # a child process: the generator fixes COLUMNS, TERM and NO_COLOR in its own environment, not in this one
    env = {key: value for key, value in subprocess_env().items() if not key.startswith("LINEGUARD_")}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "cli_docs.py"), "--stdout"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    if "Not installed here" in done.stdout:
        pytest.skip("the reference covers every command; here some command packages are not installed")
    return done.stdout


def test_cli_reference_is_up_to_date() -> None:
    expected = generated()
    actual = CLI_MD.read_text(encoding="utf-8") if CLI_MD.exists() else ""
    if actual != expected:
        diff = difflib.unified_diff(
            actual.splitlines(), expected.splitlines(), "docs/CLI.md", "generated", n=1, lineterm=""
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/CLI.md differs from the lineguard app; regenerate it with: {REGENERATE}\n{shown}")


def listed(runner: CliRunner, app: typer.Typer, *path: str) -> set[str]:
    """The commands `lineguard [path] --help` lists in its Commands panel."""
    shown = runner.invoke(app, [*path, "--help"])
    assert shown.exit_code == 0, shown.output
    panel = shown.output.partition("Commands")[2]
    return set(re.findall(r"^│ ([a-z][a-z-]+) ", panel, flags=re.MULTILINE))


def test_cli_reference_has_every_command_of_help() -> None:
    runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    app = build_app()
    top = listed(runner, app)
    assert {"consume", "defects", "models"} <= top
    shown = {(name,) for name in top}
    for name in top:
        shown |= {(name, sub) for sub in listed(runner, app, name)}
    text = CLI_MD.read_text(encoding="utf-8")
    documented = {tuple(path.split()) for path in re.findall(r"^#+ `lineguard ([a-z -]+)`$", text, flags=re.MULTILINE)}
    missing = sorted(" ".join(path) for path in shown - documented)
    assert not missing, f"commands missing from docs/CLI.md: {missing}; regenerate it with: {REGENERATE}"
