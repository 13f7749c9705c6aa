"""What the CLI shows back from stored rows, on SQLite and PostgreSQL, when the line wrote hostile values: camera ids
that are spreadsheet formulas or Rich markup, and image URIs outside the frame store (the issue's attacks 1, 6, 7)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest
from helpers import frame_result
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.frames.store import FrameStore
from pipeline.storage.engine import open_database
from pipeline.storage.store import ModelInfo, write_results
from pipeline.storage.tables import Defect

FORMULAS = ['=HYPERLINK("http://evil.example/x","open")', "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0"]
MARKUP = ["[/bold]", "[link=http://evil.example/x]cam-1[/link]", "cam-\x1b]8;;http://evil.example\x1b\\x\x1b]8;;\x1b\\"]


def plant(sessions: sessionmaker[Session], cameras: list[str]) -> list[int]:
    """Defect rows with these camera ids, as the batch writer stores them; their ids."""
    results = [
        dataclasses.replace(frame_result(i, True, camera=camera), frame=b"\x89PNG-ish", frame_content_type="image/png")
        for i, camera in enumerate(cameras)
    ]
    with sessions() as session, session.begin():
        write_results(session, results, [], [], ModelInfo("tiny", "1"), 60)
    with sessions() as session:
        return list(session.scalars(select(Defect.id).order_by(Defect.source_offset)))


def lineguard(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "250"})  # wide enough for whole cells
    return done.exit_code, done.output + (str(done.exception) if done.exception and done.exit_code != 0 else "")


def test_csv_cells_from_the_line_stay_text(db_url: str) -> None:
    _, sessions = open_database(db_url)
    plant(sessions, FORMULAS)
    code, output = lineguard("defects", "list", "--db", db_url, "--format", "csv")
    assert code == 0, output
    cameras = [row["camera_id"] for row in csv.DictReader(io.StringIO(output))]
    assert sorted(cameras) == sorted("'" + camera for camera in FORMULAS)


def test_rich_markup_in_stored_strings_is_shown_as_typed(db_url: str) -> None:
    _, sessions = open_database(db_url)
    plant(sessions, MARKUP)
    code, output = lineguard("defects", "list", "--db", db_url)
    assert code == 0, output  # `[/bold]` used to end the listing with a MarkupError
    assert "[/bold]" in output and "[link=http://evil.example/x]cam-1[/link]" in output
    assert "\x1b]8;" not in output  # no hidden terminal hyperlink
    shown = json.loads(lineguard("defects", "list", "--db", db_url, "--format", "json")[1])
    assert sorted(row["camera_id"] for row in shown) == sorted(MARKUP)  # json carries them exactly


@pytest.mark.parametrize("uri", ["file:///proc/self/environ", "file:///etc/passwd", "http://127.0.0.1:9/x.png"])
def test_images_are_read_only_from_the_frame_store(db_url: str, tmp_path: Path, uri: str) -> None:
    _, sessions = open_database(db_url)
    [planted, kept] = plant(sessions, ["cam-1", "cam-2"])
    store = FrameStore(str(tmp_path / "frames"))  # the configured one (LINEGUARD_FRAME_STORE_URL, conftest)
    [inside] = store.put({"frames/0/0000000000000000/00000000000000000001-frame.png": b"\x89PNG-real"})
    with sessions() as session, session.begin():
        session.execute(update(Defect).where(Defect.id == planted).values(frame_uri=uri, overlay_uri=uri))
        session.execute(update(Defect).where(Defect.id == kept).values(frame_uri=inside, frame=None))
        session.execute(update(Defect).values(review_status="rejected"))
    saved = tmp_path / "saved.bin"
    code, output = lineguard("defects", "show", str(planted), "--db", db_url, "--save-frame", str(saved))
    assert code != 0 and "not an object of the frame store" in output and "refused" in output
    assert not saved.exists()
    code, output = lineguard("defects", "show", str(kept), "--db", db_url, "--save-frame", str(saved))
    assert code == 0 and saved.read_bytes() == b"\x89PNG-real"

    out = tmp_path / "dataset"
    code, output = lineguard("defects", "export", "--out", str(out), "--db", db_url)
    assert code == 0, output
    stats = json.loads(output)
    assert stats["skipped"]["frame URI outside the frame store (refused)"] == 1  # the other one: not a real PNG
    assert not any("root:" in p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file())
