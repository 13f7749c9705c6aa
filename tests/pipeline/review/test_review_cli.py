"""`lineguard review serve`: refuses to start without a token unless read-only, says in one line when the review
extra is missing, and serves under a root path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from conftest import REPO_ROOT, subprocess_env
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from pipeline.dev.broker import free_port
from pipeline.storage.engine import migrate


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
    for weak in ("short", "CHANGE-ME-16-characters-or-more", "a" * 40):
        refused = lineguard(["review", "serve", "--db", f"sqlite:///{db}"], LINEGUARD_REVIEW_TOKEN=weak)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1 and "lineguard review token" in lines[0], lines
        assert not db.exists()
    named = lineguard(["review", "serve", "--db", f"sqlite:///{db}"], LINEGUARD_REVIEW_TOKENS='{"ana": "aaaa"}')
    assert named.returncode == 1 and "review token of 'ana' is refused" in named.stderr


def test_review_token_prints_a_token_the_page_accepts() -> None:
    from pipeline.review.auth import token_problem

    printed = lineguard(["review", "token"])
    assert printed.returncode == 0 and token_problem(printed.stdout.strip()) is None
    entry = lineguard(["review", "token", "--reviewer", "ana"])
    [(name, token)] = json.loads(entry.stdout).items()
    assert name == "ana" and token_problem(token) is None and token != printed.stdout.strip()


def test_read_only_never_creates_nor_migrates(tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    missing = lineguard(["review", "serve", "--read-only", "--db", f"sqlite:///{db}"])
    assert missing.returncode == 1 and not db.exists()
    assert missing.stderr.strip().splitlines() == [
        f"error: no database at sqlite:///{db}: `lineguard db upgrade --db ...` creates it (--read-only never does)"
    ]
    behind = tmp_path / "behind.db"
    migrate(f"sqlite:///{behind}", "0004")
    refused = lineguard(["review", "serve", "--read-only", "--db", f"sqlite:///{behind}"])
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1 and "schema revision 0004" in lines[0], lines
    assert "lineguard db upgrade" in lines[0]
    engine = create_engine(f"sqlite:///{behind}")
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0004"  # left as it was
    engine.dispose()


def test_a_read_only_server_cannot_write_even_through_a_bug(db_url: str) -> None:
    from pipeline.storage.engine import open_database_read_only

    migrate(db_url)
    _, sessions = open_database_read_only(db_url)
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM defects")).scalar() == 0
        with pytest.raises(DBAPIError):
            session.execute(text("DELETE FROM defects"))


def test_says_in_one_line_when_the_review_extra_is_missing() -> None:
    done = lineguard(["review", "serve", "--read-only"], prelude="sys.modules['fastapi'] = None")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'lineguard[review]'" in lines[0] and "fastapi" in lines[0], lines


def test_serves_read_only_under_a_root_path(tmp_path: Path) -> None:
    port = free_port()
    migrate(f"sqlite:///{tmp_path / 'r.db'}")  # read-only serves a database `lineguard db upgrade` made
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
