"""`lineguard defects list | show | review | export`: the review queries over stored defects."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.options import ConfigOpt, DbOpt, settings_from, stored_text
from pipeline.errors import LineGuardError

TABLE_COLUMNS = ("id", "camera", "captured (UTC)", "score", "regions", "status", "label")

defects_app = typer.Typer(help="Review stored defects.", no_args_is_help=True)


@defects_app.command("list")
def defects_list(
    db: DbOpt = None,
    camera: Annotated[str | None, typer.Option(help="camera id")] = None,
    line: Annotated[str | None, typer.Option(help="line id")] = None,
    since: Annotated[str | None, typer.Option(help="30m, 2h, 7d or an ISO time")] = None,
    min_score: Annotated[float | None, typer.Option(help="lowest score shown")] = None,
    status: Annotated[str | None, typer.Option(help="review status: new, confirmed, rejected")] = None,
    cluster: Annotated[int | None, typer.Option(help="cluster id from `lineguard cluster` (-1: dbscan noise)")] = None,
    limit: Annotated[int, typer.Option(help="rows at most")] = 100,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    config: ConfigOpt = None,
) -> None:
    """List defects, newest first."""
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import list_defects, parse_since, spreadsheet_cell, summary

    if output not in ("table", "json", "csv"):
        raise LineGuardError(f"--format must be table, json or csv, got {output!r}")
    settings = settings_from(config, database_url=db)
    _, sessions = open_database(settings.db_url)
    with sessions() as session:
        rows = [
            summary(d)
            for d in list_defects(
                session,
                camera,
                line,
                parse_since(since) if since else None,
                min_score,
                status,
                limit=limit,
                cluster=cluster,
            )
        ]
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
    elif output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        # the same guard as the page's export: a camera id like =HYPERLINK(...) stays text in a spreadsheet
        writer.writerows({name: spreadsheet_cell(value) for name, value in row.items()} for row in rows)
        typer.echo(buffer.getvalue(), nl=False)
    else:
        # The table keeps what fits a terminal; json and csv carry every field.
        table = Table(title=f"{len(rows)} defects")
        for column in TABLE_COLUMNS:
            table.add_column(column, no_wrap=True)
        for row in rows:
            captured = str(row["captured_at"])[:19].replace("T", " ")
            cells = (row["id"], row["camera_id"], captured, f"{row['score']:.4f}", row["regions"], row["status"])
            table.add_row(*(stored_text(cell) for cell in (*cells, row["label"] or "")))
        Console().print(table)


# ids beyond the database's integer column are a usage error, not a database error (PostgreSQL: 32-bit ids)
DefectIdArg = Annotated[int, typer.Argument(help="defect id", min=1, max=2**31 - 1)]


@defects_app.command("show")
def defects_show(
    defect_id: DefectIdArg,
    db: DbOpt = None,
    save_frame: Annotated[Path | None, typer.Option(help="write the stored frame here")] = None,
    save_overlay: Annotated[Path | None, typer.Option(help="write the heatmap overlay PNG here")] = None,
    save_restored: Annotated[
        Path | None, typer.Option(help="write the model's restored (denoised) frame PNG here")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Show one defect with its regions; optionally save its frame, heatmap overlay and restored frame."""
    from pipeline.frames.store import FrameStore, read_defect_image
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import get_defect, summary

    settings = settings_from(config, database_url=db)
    _, sessions = open_database(settings.db_url)
    with sessions() as session:
        defect = get_defect(session, defect_id)
        data = summary(defect) | {"regions": defect.regions, "ground_truth": defect.ground_truth}
    # from the configured frame store only (a URI elsewhere in the row is refused: an error, nothing written) or,
    # for rows written before it, from the row
    store = FrameStore(settings.frame_store_url, create=False)
    for kind, target in (("frame", save_frame), ("overlay", save_overlay), ("restored", save_restored)):
        image = read_defect_image(defect, kind, store) if target is not None else None
        if target is not None and image is not None:
            target.write_bytes(image[0])
    typer.echo(json.dumps(data, indent=2))


@defects_app.command("review")
def defects_review(
    defect_id: DefectIdArg,
    status: Annotated[str, typer.Option(help="confirmed, rejected or new")],
    label: Annotated[str | None, typer.Option(help="defect type, e.g. scratch")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Record a review verdict and label on one defect."""
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import review_defect, summary

    settings = settings_from(config, database_url=db)
    _, sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        data = summary(review_defect(session, defect_id, status, label))
    typer.echo(json.dumps(data, indent=2))


@defects_app.command("export")
def defects_export(
    out: Annotated[Path, typer.Option(help="folder to write the data set into")],
    status: Annotated[
        list[str] | None, typer.Option(help="confirmed (-> test/<label>) or rejected (-> train/good); repeatable")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="only defects with this label; repeatable")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write reviewed defects as an MVTec AD data set: train/good, test/<label>, ground_truth/<label> masks."""
    from pipeline.frames.mvtec import EXPORTED_STATUSES, export_mvtec
    from pipeline.frames.store import FrameStore
    from pipeline.storage.engine import open_database

    settings = settings_from(config, database_url=db)
    _, sessions = open_database(settings.db_url)
    store = FrameStore(settings.frame_store_url, create=False)  # frames from there only, or old rows' blobs
    stats = export_mvtec(sessions, out, status or EXPORTED_STATUSES, label or (), store)
    typer.echo(json.dumps({"out": str(out), "written": stats.written, "skipped": stats.skipped}, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(defects_app, name="defects")
