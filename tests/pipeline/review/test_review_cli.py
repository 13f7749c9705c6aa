"""`lineguard review serve`: refuses to start without a token unless read-only, says in one line when the review
extra is missing, and serves under a root path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO_ROOT, subprocess_env

from pipeline.dev.broker import free_port


def lineguard(args: list[str], prelude: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{prelude}\nsys.argv = ['lineguard', *{args!r}]\nfrom pipeline.cli.app import main\nmain()\n"
    environment = {k: v for k, v in subprocess_env().items() if not k.startswith("LINEGUARD_REVIEW")} | env
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_refuses_to_start_without_a_token_unless_read_only(tmp_path: Path) -> None:
    db = tmp_path / "review.db"
    done = lineguard(["review", "serve", "--db", f"sqlite:///{db}"])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: the review page needs LINEGUARD_REVIEW_TOKEN for labelling, or --read-only"
    ]
    assert not db.exists()  # refused before touching the database
    short = lineguard(["review", "serve", "--db", f"sqlite:///{db}"], LINEGUARD_REVIEW_TOKEN="short")
    assert short.returncode == 1 and "at least 16 characters" in short.stderr


def test_says_in_one_line_when_the_review_extra_is_missing() -> None:
    done = lineguard(["review", "serve", "--read-only"], prelude="sys.modules['fastapi'] = None")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'lineguard[review]'" in lines[0] and "fastapi" in lines[0], lines


def test_serves_read_only_under_a_root_path(tmp_path: Path) -> None:
    port = free_port()
    args = ["review", "serve", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--port", str(port), "--root-path", "/qa/"]
    command = [sys.executable, "-m", "pipeline", *args, "--read-only"]
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("LINEGUARD_REVIEW")}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        html = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not html:
            try:
                # uvicorn puts the root path in front of the path a prefix-stripping proxy forwards
                html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                time.sleep(0.2)
        assert 'href="/qa/rates"' in html and "read-only" in html and "no defects match" in html
    finally:
        process.terminate()
        process.wait(15)
    assert os.path.exists(tmp_path / "r.db")
