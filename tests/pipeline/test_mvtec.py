"""Reviewed defects exported in the MVTec AD layout, on SQLite and PostgreSQL, frames from the store and old blobs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from helpers import frame_result
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli import defects as defects_cli
from pipeline.errors import LineGuardError
from pipeline.frames.mvtec import export_mvtec, folder_name
from pipeline.frames.store import FrameStore
from pipeline.results import FrameResult
from pipeline.storage.engine import open_database
from pipeline.storage.review import review_defect
from pipeline.storage.store import ModelInfo, write_results
from pipeline.storage.tables import Defect


def encoded(ext: str, value: int) -> bytes:
    ok, data = cv2.imencode(ext, np.full((48, 64), value, np.uint8))
    assert ok
    return data.tobytes()


def defect(offset: int, content_type: str, frame: bytes, box: tuple[int, int, int, int]) -> FrameResult:
    x, y, w, h = box
    regions = [{"x": x, "y": y, "w": w, "h": h, "area": w * h, "peak": 0.9}]
    return replace(frame_result(offset, True), frame=frame, frame_content_type=content_type, regions=regions)


@pytest.fixture
def reviewed(db_url: str, tmp_path: Path) -> dict[str, int]:
    """Six defects, reviewed: their ids by name."""
    _, sessions = open_database(db_url)
    store = FrameStore(str(tmp_path / "frames"))
    results = {
        "scratch": defect(0, "image/jpeg", encoded(".jpg", 200), (4, 8, 10, 6)),
        "dent": defect(1, "image/png", encoded(".png", 90), (0, 0, 64, 2)),
        "false alarm": defect(2, "image/jpeg", encoded(".jpg", 30), (1, 1, 2, 2)),
        "unreviewed": defect(3, "image/jpeg", encoded(".jpg", 30), (1, 1, 2, 2)),
        "raw": defect(4, "application/x-raw", bytes(48 * 64), (1, 1, 2, 2)),
    }
    old = defect(5, "image/png", encoded(".png", 120), (60, 40, 20, 20))  # a row from before the store, as a blob
    with sessions() as session, session.begin():
        refs = store.put_results(results.values(), [])
        write_results(session, list(results.values()), [], [], ModelInfo("m", "1"), 60, refs)
        write_results(session, [old], [], [], ModelInfo("m", "1"), 60)
    verdicts = {
        "scratch": ("confirmed", "scratch"),
        "dent": ("confirmed", "dent/../../x"),
        "false alarm": ("rejected", None),
        "raw": ("confirmed", "scratch"),
        "old": ("confirmed", None),
    }
    offsets = {name: offset for offset, name in enumerate([*results, "old"])}
    ids = {}
    with sessions() as session, session.begin():
        by_offset = {d.source_offset: d.id for d in session.scalars(select(Defect))}
        for name, (status, label) in verdicts.items():
            ids[name] = by_offset[offsets[name]]
            review_defect(session, ids[name], status, label)
        ids["unreviewed"] = by_offset[offsets["unreviewed"]]
    return ids


def test_export_writes_the_mvtec_layout(db_url: str, tmp_path: Path, reviewed: dict[str, int]) -> None:
    _, sessions = open_database(db_url)
    out = tmp_path / "dataset"
    stats = export_mvtec(sessions, out)
    assert stats.written == {"test/scratch": 1, "test/dent_.._.._x": 1, "train/good": 1, "test/unlabelled": 1}
    assert stats.skipped == {"application/x-raw frame (no shape to decode it with)": 1}
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    name = {key: f"{value:06d}" for key, value in reviewed.items()}
    assert files == sorted(
        [
            f"train/good/{name['false alarm']}.png",
            f"test/scratch/{name['scratch']}.png",
            f"ground_truth/scratch/{name['scratch']}_mask.png",
            f"test/dent_.._.._x/{name['dent']}.png",
            f"ground_truth/dent_.._.._x/{name['dent']}_mask.png",
            f"test/unlabelled/{name['old']}.png",
            f"ground_truth/unlabelled/{name['old']}_mask.png",
        ]
    )
    frame = cv2.imread(str(out / f"test/scratch/{name['scratch']}.png"), cv2.IMREAD_UNCHANGED)
    assert frame.shape == (48, 64) and abs(int(frame.mean()) - 200) <= 2  # the JPEG, decoded, as PNG
    mask = cv2.imread(str(out / f"ground_truth/scratch/{name['scratch']}_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (48, 64) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert (mask == 255).sum() == 10 * 6 and mask[8:14, 4:14].all()
    clipped = cv2.imread(str(out / f"ground_truth/unlabelled/{name['old']}_mask.png"), cv2.IMREAD_UNCHANGED)
    assert (clipped == 255).sum() == 4 * 8  # a box past the frame's edge is clipped to it
    assert export_mvtec(sessions, out).written == stats.written  # again: the same names, rewritten

    only = export_mvtec(sessions, tmp_path / "scratch-only", ["confirmed"], ["scratch"])
    assert only.written == {"test/scratch": 1}
    with pytest.raises(LineGuardError, match="reviewed defects"):
        export_mvtec(sessions, tmp_path / "x", ["new"])


def test_label_folders_stay_inside() -> None:
    assert folder_name("../../etc") == "etc" and folder_name(None) == "unlabelled" and folder_name("good") == "good_"
    assert folder_name("  deep scratch ") == "deep_scratch"


def test_export_command(db_url: str, tmp_path: Path, reviewed: dict[str, int]) -> None:
    app = typer.Typer()
    defects_cli.register(app)
    out = tmp_path / "cli-dataset"
    command = ["defects", "export", "--db", db_url, "--out", str(out), "--status", "rejected", "--status", "confirmed"]
    result = CliRunner().invoke(app, [*command, "--label", "scratch"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == {"test/scratch": 1}
    assert (out / "test" / "scratch" / f"{reviewed['scratch']:06d}.png").is_file()
