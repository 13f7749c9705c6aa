"""Frame store upkeep on SQLite and PostgreSQL: retention drops old defects' images (objects and old blobs) and
clears their references, the consumer's sweeper thread applies it, and the `lineguard frames` commands run both."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from helpers import frame_result, wait_for
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from pipeline.cli import frames as frames_cli
from pipeline.frames import sweep as framesweep
from pipeline.frames.store import FrameStore
from pipeline.frames.sweep import RetentionSweeper, prune_frames
from pipeline.results import FrameResult
from pipeline.storage.engine import open_database
from pipeline.storage.store import ModelInfo, write_results
from pipeline.storage.tables import Defect

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def defect_at(offset: int, detected: datetime) -> FrameResult:
    images = {"frame": b"jpeg", "frame_content_type": "image/jpeg", "overlay_png": PNG_BYTES, "restored_png": PNG_BYTES}
    return replace(frame_result(offset, True), detected_at=detected, captured_at=detected, **images)


def store_defects(
    sessions: sessionmaker[Session], store: FrameStore, results: list[FrameResult], blobs: bool = False
) -> None:
    """Rows as the writer makes them (objects first), or as they were written before the store (blobs)."""
    refs = None if blobs else store.put_results(results, [])
    with sessions() as session, session.begin():
        write_results(session, results, [], [], ModelInfo("m", "1"), 60, refs)


def images_of(sessions: sessionmaker[Session]) -> dict[int, tuple[object, ...]]:
    with sessions() as session:
        query = select(Defect.source_offset, Defect.frame_uri, Defect.overlay_uri, Defect.restored_uri, Defect.frame)
        return {row[0]: tuple(row[1:]) for row in session.execute(query)}


def test_retention_drops_old_images_and_keeps_the_verdicts(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(framesweep, "CHUNK", 2)  # several chunks, each starting where the last ended
    _, sessions = open_database(db_url)
    store = FrameStore(str(tmp_path / "frames"))
    store_defects(sessions, store, [defect_at(0, NOW - timedelta(days=40)), defect_at(1, NOW - timedelta(days=31))])
    store_defects(sessions, store, [defect_at(2, NOW - timedelta(days=45))], blobs=True)  # a row from before the store
    store_defects(sessions, store, [defect_at(3, NOW - timedelta(days=29))])
    recent = {uri for uri in images_of(sessions)[3] if isinstance(uri, str)}
    assert len(recent) == 3

    stats = prune_frames(store, sessions, retention_days=30, now=NOW)
    assert (stats.defects, stats.objects) == (3, 6)
    images = images_of(sessions)
    assert sorted(images) == [0, 1, 2, 3]  # the verdicts stay
    assert images[0] == images[1] == images[2] == (None, None, None, None)
    assert {obj.uri for folder in store.objects() for obj in folder} == recent  # a row never points at a gone object
    assert prune_frames(store, sessions, retention_days=30, now=NOW).defects == 0  # idempotent


def test_the_consumer_sweeper_applies_the_retention(db_url: str, tmp_path: Path) -> None:
    _, sessions = open_database(db_url)
    store = FrameStore(str(tmp_path / "frames"))
    now = datetime.now(UTC)
    store_defects(sessions, store, [defect_at(0, now - timedelta(days=3)), defect_at(1, now - timedelta(hours=1))])
    sweeper = RetentionSweeper(store, sessions, retention_days=2, every_s=3600).start()
    try:
        wait_for(lambda: sweeper.passes >= 1, timeout=30, what="a retention pass")
    finally:
        sweeper.stop()
    images = images_of(sessions)
    assert images[0] == (None, None, None, None) and all(images[1][:3])
    assert all(store.exists(uri) for uri in images[1][:3] if isinstance(uri, str))


def cli_app() -> typer.Typer:
    app = typer.Typer()
    frames_cli.register(app)
    return app


def test_frames_commands(db_url: str, tmp_path: Path) -> None:
    _, sessions = open_database(db_url)
    store = FrameStore(str(tmp_path / "cli-frames"))
    now = datetime.now(UTC)
    store_defects(sessions, store, [defect_at(0, now - timedelta(days=10)), defect_at(1, now)])
    store.put_results([defect_at(5, now)], [])  # a crash's orphans
    runner = CliRunner()
    common = ["--db", db_url, "--store", store.url]

    kept = runner.invoke(cli_app(), ["frames", "gc", *common])  # default: only objects older than an hour
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.output) == {"seen": 9, "deleted": 0, "too_new": 9, "foreign": 0}
    time.sleep(0.05)
    swept = runner.invoke(cli_app(), ["frames", "gc", "--older-than", "0s", *common])
    assert swept.exit_code == 0 and json.loads(swept.output)["deleted"] == 3

    pruned = runner.invoke(cli_app(), ["frames", "prune", "--days", "7", *common])
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.output) == {"defects": 1, "objects": 3}
    assert sum(len(folder) for folder in store.objects()) == 3

    no_retention = runner.invoke(cli_app(), ["frames", "prune", *common])
    assert no_retention.exit_code != 0 and "no retention" in str(no_retention.exception)
    bad = runner.invoke(cli_app(), ["frames", "gc", "--older-than", "soon", *common])
    assert bad.exit_code != 0 and "use 90s, 30m, 2h or 7d" in str(bad.exception)
