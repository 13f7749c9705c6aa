"""`lineguard cluster` on real SQLite and PostgreSQL: ids written per defect, silhouette reported, contact sheets
written, `defects list --cluster N` filtering by them; the migration's column comes and goes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import pytest
from helpers import frame_result
from latent_factory import build_encoder, surface
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.storage.engine import make_engine, migrate, open_database
from pipeline.storage.store import ModelInfo, write_batch
from pipeline.storage.tables import Defect

PITS, STREAKS = range(0, 6), range(6, 12)
NO_FRAME = 12


def png(image: object) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def seed(url: str) -> None:
    """Six pits and six streaks, each region at the defect's box, on two cameras; one defect without a frame."""
    results = []
    for offset in range(NO_FRAME + 1):
        base = frame_result(offset, True, camera="cam-1" if offset % 2 else "cam-2")
        region = [{"x": 40, "y": 30, "w": 16, "h": 16, "area": 256, "peak": 0.9}]
        if offset == NO_FRAME:
            results.append(dataclasses.replace(base, regions=region))
            continue
        frame = png(surface("pit" if offset in PITS else "streak", seed=offset))
        results.append(dataclasses.replace(base, regions=region, frame=frame, frame_content_type="image/png"))
    _, sessions = open_database(url)
    with sessions() as session, session.begin():
        write_batch(
            session, "cluster-tests", results, {("frames", 0): NO_FRAME + 1}, [], [], ModelInfo("tiny", "1"), 60
        )


def clusters_by_offset(url: str) -> dict[int, int | None]:
    _, sessions = open_database(url)
    with sessions() as session:
        return {offset: cluster for offset, cluster in session.execute(select(Defect.source_offset, Defect.cluster))}


@pytest.mark.integration
def test_cluster_writes_ids_sheets_and_filters(db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    encoder = build_encoder(tmp_path / "tiny.encoder.onnx")
    out = tmp_path / "clusters"
    app, runner = build_app(), CliRunner()

    result = runner.invoke(app, ["cluster", "--db", db_url, "--model", str(encoder), "--k", "2", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "12 defects in 2 clusters" in result.output and "1 without a usable frame" in result.output
    clusters = clusters_by_offset(db_url)
    assert clusters[NO_FRAME] is None
    assert {clusters[o] for o in PITS} != {clusters[o] for o in STREAKS}
    assert len({clusters[o] for o in PITS}) == 1 and len({clusters[o] for o in STREAKS}) == 1
    report = json.loads((out / "clusters.json").read_text())
    assert report["silhouette"] > 0.9  # two well-separated kinds of defect
    assert report["sizes"] == {"0": 6, "1": 6}
    for cluster in (0, 1):
        sheet = cv2.imread(str(out / f"cluster_{cluster}.png"))
        assert sheet is not None and sheet.shape[0] > 96  # a 3 x 3 grid of six 96-pixel tiles
    pit_cluster = clusters[0]
    listed = runner.invoke(app, ["defects", "list", "--db", db_url, "--cluster", str(pit_cluster), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert len(rows) == 6 and {row["cluster"] for row in rows} == {pit_cluster}

    # a new clustering replaces the last one: a defect it leaves out has no cluster any more, nor its sheets
    args = ["--method", "dbscan", "--min-samples", "2", "--eps", "1.0", "--camera", "cam-1", "--out", str(out)]
    again = runner.invoke(app, ["cluster", "--db", db_url, "--model", str(encoder), *args])
    assert again.exit_code == 0, again.output
    after = clusters_by_offset(db_url)
    assert all(after[o] is None for o in range(0, NO_FRAME, 2))  # cam-2
    cam1_pits, cam1_streaks = ({after[o] for o in group if o % 2} for group in (PITS, STREAKS))
    assert len(cam1_pits) == len(cam1_streaks) == 1 and cam1_pits != cam1_streaks and None not in cam1_pits
    assert json.loads((out / "clusters.json").read_text())["sizes"] == {"0": 3, "1": 3}
    assert sorted(p.name for p in out.glob("cluster_*.png")) == ["cluster_0.png", "cluster_1.png"]


def test_scoring_model_without_encoder_is_one_line_error(tmp_path: Path, tiny_model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lineguard.db'}"
    result = CliRunner().invoke(build_app(), ["cluster", "--db", url, "--model", str(tiny_model)])
    assert result.exit_code == 1
    message = str(result.exception)
    assert "no encoder lies beside it" in message and "--encoder-only-out" in message and "\n" not in message


def test_unknown_method_and_too_few_defects_are_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lineguard.db'}"
    encoder = build_encoder(tmp_path / "tiny.encoder.onnx")
    app, runner = build_app(), CliRunner()
    empty = runner.invoke(app, ["cluster", "--db", url, "--model", str(encoder)])
    assert "need at least 2 defects" in str(empty.exception)
    seed(url)
    bad = runner.invoke(app, ["cluster", "--db", url, "--model", str(encoder), "--method", "spectral"])
    assert "--method must be one of kmeans, dbscan" in str(bad.exception)
    too_many = runner.invoke(app, ["cluster", "--db", url, "--model", str(encoder), "--k", "40"])
    assert "--k must be in 2..12" in str(too_many.exception)


@pytest.mark.integration
def test_migration_0008_adds_and_removes_the_cluster_column(db_url: str) -> None:
    from alembic import command

    from pipeline.storage.engine import alembic_config

    migrate(db_url)
    engine = make_engine(db_url)
    columns = {c["name"] for c in inspect(engine).get_columns("defects")}
    assert "cluster" in columns
    assert "ix_defects_cluster_captured" in {i["name"] for i in inspect(engine).get_indexes("defects")}
    command.downgrade(alembic_config(db_url), "0007")
    engine.dispose()
    assert "cluster" not in {c["name"] for c in inspect(make_engine(db_url)).get_columns("defects")}
    migrate(db_url)
