"""The demo behind `lineguard demo`: the whole job on embedded defaults (embedded broker, SQLite, a small
model trained on the spot, a stream of frames with defects, the consumer, signed webhook alerts to a local
receiver), summarised against the simulator's ground truth."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEMO_SECRET = "lineguard-demo-secret"


@dataclass(frozen=True)
class DemoSummary:
    """What the demo did and found, compared with the simulator's ground truth."""

    frames_published: int
    defects_injected: int
    frames_scored: int
    defects_flagged: int
    defects_caught: int
    false_alarms: int
    dead_lettered: int
    alerts_received: int
    consumer_frames_per_s: float
    train_seconds: float
    total_seconds: float
    database: str
    model: str


def write_normal_frames(root: Path, count: int, seed: int) -> Path:
    """Normal frames from the simulator's own generator: the model learns the line it will watch."""
    from pipeline.dev.simulator import synthetic_frame

    folder = root / "train" / "good"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index:04d}.png"), synthetic_frame(rng, defect=False).image)
    return root


def run_demo(workdir: Path, frames: int, defect_rate: float, train_minutes: float, epochs: int = 40) -> DemoSummary:
    """Train, stream, consume, alert; every part is the real one, on 127.0.0.1."""
    from pipeline.alerting.outbox import flush_outbox
    from pipeline.consumer import run_consumer
    from pipeline.dev.broker import EmbeddedBroker, ensure_topics
    from pipeline.dev.receiver import AlertReceiver
    from pipeline.dev.simulator import publish_frames
    from pipeline.results import FrameResult
    from pipeline.settings import load_settings
    from training.config import TrainConfig
    from training.train import train

    started = time.monotonic()
    data = write_normal_frames(workdir / "normal", count=200, seed=1)
    model = train(
        TrainConfig(
            data_dir=data,
            out=workdir / "model.onnx",
            size=64,
            max_minutes=train_minutes,
            epochs=epochs,
            patience=8,
            # a quarter of the normals calibrate the threshold, with a one-std margin: with few
            # held-out frames their 99th percentile is close to their maximum, and about 1 in
            # n+1 new normal frames exceeds the maximum of n
            val_fraction=0.25,
            sensitivity=1.0,
            model_name="demo-line",
            model_version="1",
        )
    )
    train_seconds = time.monotonic() - started
    verdicts: list[FrameResult] = []
    with EmbeddedBroker(log_file=workdir / "broker.log") as broker, AlertReceiver(secret=DEMO_SECRET) as receiver:
        settings = load_settings(
            bootstrap_servers=broker.bootstrap,
            database_url=f"sqlite:///{workdir / 'lineguard.db'}",
            model_path=model,
            webhook_url=receiver.url,
            webhook_secret=DEMO_SECRET,
            group_id="demo",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_interval_ms=10000,
            burst_defects=1000,
            alert_cooldown_s=0.0,
            alert_log=False,  # the webhook receiver gets them; the summary counts them
        )
        ensure_topics(settings.kafka_common(), [settings.frames_topic, settings.dlq_topic, settings.alerts_topic])
        published = publish_frames(settings, count=frames, defect_rate=defect_rate, seed=2)
        stats = run_consumer(settings, max_messages=frames, idle_exit=10.0, on_batch=verdicts.extend)
        flush_outbox(settings, timeout_s=10.0)  # alerts the consumer had no time to send before it stopped
        alerts_received = len(receiver.alerts)
    injected = [v for v in verdicts if v.ground_truth not in (None, "good")]
    return DemoSummary(
        frames_published=published.sent,
        defects_injected=published.defects_injected,
        frames_scored=stats.frames,
        defects_flagged=sum(v.is_defect for v in verdicts),
        defects_caught=sum(v.is_defect for v in injected),
        false_alarms=sum(v.is_defect and v.ground_truth == "good" for v in verdicts),
        dead_lettered=stats.dlq,
        alerts_received=alerts_received,
        consumer_frames_per_s=stats.frames_per_s,
        train_seconds=train_seconds,
        total_seconds=time.monotonic() - started,
        database=settings.db_url,
        model=str(model),
    )
