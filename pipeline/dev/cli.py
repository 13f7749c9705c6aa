"""`lineguard broker | simulate`: the development tools' commands, added through the `lineguard.commands`
entry-point group, so that an install without `pipeline.dev` (the line image) simply lacks them."""

from __future__ import annotations

import signal
import sys
import time
from typing import Annotated

import typer

from pipeline.cli.options import BootstrapOpt, ConfigOpt, TopicOpt, quiet_kafka, settings_from


def broker(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0: a free one)")] = 9092,
    topics: Annotated[bool, typer.Option(help="create the frames, DLQ and alert topics")] = True,
    partitions: Annotated[int, typer.Option(help="partitions of the frames topic")] = 1,
) -> None:
    """Start the embedded development broker (memory only) and print its address; Ctrl-C stops it."""
    from pipeline.dev.broker import EmbeddedBroker, ensure_topics

    quiet_kafka()
    # SIGTERM (docker stop, a test's terminate) must leave through the with-block too, or the broker
    # child process outlives this command
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with EmbeddedBroker(port=port or None) as running:
        if topics:
            settings = settings_from(None, bootstrap_servers=running.bootstrap)
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
    source: Annotated[
        str, typer.Option(help="frames: 'synthetic' or an image folder (MVTec layout); sensors: a SKAB-layout CSV")
    ] = "synthetic",
    rate: Annotated[float, typer.Option(help="frames (sensors: samples) per second (0: as fast as possible)")] = 10.0,
    count: Annotated[int, typer.Option(help="frames to publish")] = 100,
    camera: Annotated[str, typer.Option(help="camera id (also the Kafka key)")] = "cam-1",
    line: Annotated[str, typer.Option(help="line id")] = "line-1",
    defect_rate: Annotated[float, typer.Option(help="synthetic source: share of defective frames")] = 0.1,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    kind: Annotated[str, typer.Option(help="'frames' or 'sensors' (replay --source CSV)")] = "frames",
    device: Annotated[str, typer.Option(help="sensors: device id (also the Kafka key)")] = "sensor-1",
    block: Annotated[int, typer.Option(help="sensors: samples per record", min=1)] = 1,
    config: ConfigOpt = None,
) -> None:
    """Publish camera frames (or a sensor CSV's readings) to Kafka, ground truth in a header."""
    from pipeline.dev.simulator import publish_frames

    quiet_kafka()
    settings = settings_from(config, bootstrap_servers=bootstrap)
    if kind == "sensors":
        from pathlib import Path

        from pipeline.dev.sensorsim import publish_readings

        if not Path(source).is_file():
            typer.echo(f"--kind sensors needs --source CSV; {source!r} is not a file", err=True)
            raise typer.Exit(1)
        sent = publish_readings(settings, Path(source), topic, rate or None, device, line, block)
        typer.echo(f"sent {sent.sent} sensor records to {topic or settings.frames_topic} in {sent.seconds:.1f}s")
        return
    if kind != "frames":
        typer.echo(f"--kind must be 'frames' or 'sensors', got {kind!r}", err=True)
        raise typer.Exit(1)
    stats = publish_frames(settings, topic, source, count, rate or None, camera, line, seed, defect_rate)
    typer.echo(
        f"sent {stats.sent} frames ({stats.defects_injected} defective) to "
        f"{topic or settings.frames_topic} in {stats.seconds:.1f}s ({stats.rate:.0f} frames/s)"
    )


def register(app: typer.Typer) -> None:
    app.command("broker")(broker)
    app.command("simulate")(simulate)
