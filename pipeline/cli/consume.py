"""`lineguard consume`: run the consumer loop until stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.options import BootstrapOpt, ConfigOpt, DbOpt, TopicOpt, quiet_kafka, settings_from


def consume(
    bootstrap: BootstrapOpt = None,
    model: Annotated[Path | None, typer.Option("--model", help="LineGuard .onnx model")] = None,
    sensor_model: Annotated[
        Path | None, typer.Option("--sensor-model", help="LineGuard sensor .onnx model (kind sensor)")
    ] = None,
    denoised_topic: Annotated[str | None, typer.Option(help="publish each window's reconstruction here")] = None,
    model_source: Annotated[
        str | None,
        typer.Option("--model-source", help="file, or registry: follow the active version (lineguard models promote)"),
    ] = None,
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

    quiet_kafka()
    settings = settings_from(
        config,
        bootstrap_servers=bootstrap,
        model_path=model,
        sensor_model_path=sensor_model,
        denoised_topic=denoised_topic,
        model_source=model_source,
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
    if stats.sensor_records:
        typer.echo(
            f"sensor records {stats.sensor_records}  readings {stats.readings}  windows {stats.windows}  "
            f"anomalies {stats.sensor_anomalies}  gaps {stats.gaps}  {stats.readings_per_s:.0f} readings/s"
        )


def register(app: typer.Typer) -> None:
    app.command("consume")(consume)
