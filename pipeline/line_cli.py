"""`lineguard broker | simulate | consume | defects`: thin commands over the line runtime library."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.errors import LineGuardError
from pipeline.settings import Settings, load_settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="KEY=value file of LINEGUARD_* settings")]
BootstrapOpt = Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers HOST:PORT[,...]")]
TopicOpt = Annotated[str | None, typer.Option("--topic", help="frames topic (default lineguard.frames)")]
DbOpt = Annotated[str | None, typer.Option("--db", help="database URL (default sqlite:///lineguard.db)")]

TABLE_COLUMNS = ("id", "camera", "captured (UTC)", "score", "regions", "status", "label")

defects_app = typer.Typer(help="Review stored defects.", no_args_is_help=True)


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ValueError as exc:  # pydantic's ValidationError: name the field, not a traceback
        raise LineGuardError(f"invalid settings: {exc}") from exc


def _quiet_kafka() -> None:
    # kafka-python logs every connection at INFO; the line's own log is what matters here.
    logging.getLogger("kafka").setLevel(logging.WARNING)


def broker(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0: a free one)")] = 9092,
    topics: Annotated[bool, typer.Option(help="create the frames, DLQ and alert topics")] = True,
    partitions: Annotated[int, typer.Option(help="partitions of the frames topic")] = 1,
) -> None:
    """Start the embedded development broker (memory only) and print its address; Ctrl-C stops it."""
    from pipeline.dev.broker import EmbeddedBroker, ensure_topics

    _quiet_kafka()
    with EmbeddedBroker(port=port or None) as running:
        if topics:
            settings = _settings(None, bootstrap_servers=running.bootstrap)
            ensure_topics(settings.kafka_common(), [settings.frames_topic], partitions)
            ensure_topics(settings.kafka_common(), [settings.dlq_topic, settings.alerts_topic], 1)
        typer.echo(running.bootstrap, file=sys.stdout)
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def simulate(
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
    source: Annotated[str, typer.Option(help="'synthetic' or an image folder (MVTec layout)")] = "synthetic",
    rate: Annotated[float, typer.Option(help="frames per second (0: as fast as possible)")] = 10.0,
    count: Annotated[int, typer.Option(help="frames to publish")] = 100,
    camera: Annotated[str, typer.Option(help="camera id (also the Kafka key)")] = "cam-1",
    line: Annotated[str, typer.Option(help="line id")] = "line-1",
    defect_rate: Annotated[float, typer.Option(help="synthetic source: share of defective frames")] = 0.1,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Publish camera frames to Kafka, ground truth in a header."""
    from pipeline.dev.simulator import publish_frames

    _quiet_kafka()
    settings = _settings(config, bootstrap_servers=bootstrap)
    stats = publish_frames(settings, topic, source, count, rate or None, camera, line, seed, defect_rate)
    typer.echo(
        f"sent {stats.sent} frames ({stats.defects_injected} defective) to "
        f"{topic or settings.frames_topic} in {stats.seconds:.1f}s ({stats.rate:.0f} frames/s)"
    )


def consume(
    bootstrap: BootstrapOpt = None,
    model: Annotated[Path | None, typer.Option("--model", help="LineGuard .onnx model")] = None,
    db: DbOpt = None,
    topic: TopicOpt = None,
    group: Annotated[str | None, typer.Option("--group", help="consumer group id")] = None,
    max_messages: Annotated[int | None, typer.Option(help="stop after this many records")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="stop after this many seconds without records")] = None,
    batch_size: Annotated[int | None, typer.Option(help="frames per inference batch")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus /metrics on this port")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="alert webhook URL")] = None,
    config: ConfigOpt = None,
) -> None:
    """Score frames from Kafka, store defects, raise alerts; SIGTERM finishes the batch and exits."""
    from pipeline.consumer import run_consumer

    _quiet_kafka()
    settings = _settings(
        config,
        bootstrap_servers=bootstrap,
        model_path=model,
        database_url=db,
        frames_topic=topic,
        group_id=group,
        batch_size=batch_size,
        metrics_port=metrics_port,
        webhook_url=webhook_url,
    )
    stats = run_consumer(settings, max_messages=max_messages, idle_exit=idle_exit)
    typer.echo(
        f"frames {stats.frames}  defects {stats.defects}  dead-lettered {stats.dlq}  alerts {stats.alerts}  "
        f"replayed {stats.replayed}  {stats.frames_per_s:.1f} frames/s"
    )


@defects_app.command("list")
def defects_list(
    db: DbOpt = None,
    camera: Annotated[str | None, typer.Option(help="camera id")] = None,
    line: Annotated[str | None, typer.Option(help="line id")] = None,
    since: Annotated[str | None, typer.Option(help="30m, 2h, 7d or an ISO time")] = None,
    min_score: Annotated[float | None, typer.Option(help="lowest score shown")] = None,
    status: Annotated[str | None, typer.Option(help="review status: new, confirmed, rejected")] = None,
    limit: Annotated[int, typer.Option(help="rows at most")] = 100,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    config: ConfigOpt = None,
) -> None:
    """List defects, newest first."""
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import list_defects, parse_since, summary

    if output not in ("table", "json", "csv"):
        raise LineGuardError(f"--format must be table, json or csv, got {output!r}")
    settings = _settings(config, database_url=db)
    _, sessions = open_database(settings.database_url)
    with sessions() as session:
        rows = [
            summary(d)
            for d in list_defects(
                session, camera, line, parse_since(since) if since else None, min_score, status, limit=limit
            )
        ]
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
    elif output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
    else:
        # The table keeps what fits a terminal; json and csv carry every field.
        table = Table(title=f"{len(rows)} defects")
        for column in TABLE_COLUMNS:
            table.add_column(column, no_wrap=True)
        for row in rows:
            captured = str(row["captured_at"])[:19].replace("T", " ")
            table.add_row(
                str(row["id"]),
                str(row["camera_id"]),
                captured,
                f"{row['score']:.4f}",
                str(row["regions"]),
                str(row["status"]),
                str(row["label"] or ""),
            )
        Console().print(table)


@defects_app.command("show")
def defects_show(
    defect_id: Annotated[int, typer.Argument(help="defect id")],
    db: DbOpt = None,
    save_frame: Annotated[Path | None, typer.Option(help="write the stored frame here")] = None,
    save_overlay: Annotated[Path | None, typer.Option(help="write the heatmap overlay PNG here")] = None,
    config: ConfigOpt = None,
) -> None:
    """Show one defect with its regions; optionally save its frame and heatmap overlay."""
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import get_defect, summary

    settings = _settings(config, database_url=db)
    _, sessions = open_database(settings.database_url)
    with sessions() as session:
        defect = get_defect(session, defect_id)
        data = summary(defect) | {"regions": defect.regions, "ground_truth": defect.ground_truth}
        if save_frame is not None and defect.frame:
            save_frame.write_bytes(defect.frame)
        if save_overlay is not None and defect.overlay_png:
            save_overlay.write_bytes(defect.overlay_png)
    typer.echo(json.dumps(data, indent=2))


@defects_app.command("review")
def defects_review(
    defect_id: Annotated[int, typer.Argument(help="defect id")],
    status: Annotated[str, typer.Option(help="confirmed, rejected or new")],
    label: Annotated[str | None, typer.Option(help="defect type, e.g. scratch")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Record a review verdict and label on one defect."""
    from pipeline.storage.engine import open_database
    from pipeline.storage.review import review_defect, summary

    settings = _settings(config, database_url=db)
    _, sessions = open_database(settings.database_url)
    with sessions() as session, session.begin():
        data = summary(review_defect(session, defect_id, status, label))
    typer.echo(json.dumps(data, indent=2))


def register(app: typer.Typer) -> None:
    """Add the line runtime commands to the `lineguard` app."""
    app.command("broker")(broker)
    app.command("simulate")(simulate)
    app.command("consume")(consume)
    app.add_typer(defects_app, name="defects")


def main() -> None:
    """`python -m pipeline.line_cli ...`: the line commands alone, without the training stack's CLI."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    register(app)
    try:
        app()
    except LineGuardError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)


if __name__ == "__main__":
    main()
