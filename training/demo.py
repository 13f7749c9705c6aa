"""The demo behind `lineguard demo`: the whole job on embedded defaults (embedded broker, SQLite, a small
model trained on the spot, a stream of frames with defects, the consumer, signed webhook alerts to a local
receiver), summarised against the simulator's ground truth."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEMO_SECRET = "lineguard-demo-secret-for-the-local-receiver"  # >= 32 characters (Settings)


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
    # regions against the injected defects' boxes, over the caught ones: median IoU of the best-matching box, and
    # the share of caught defects marked by exactly one box
    median_box_iou: float
    one_box_share: float
    alerts_received: int
    consumer_frames_per_s: float
    train_seconds: float
    total_seconds: float
    database: str
    model: str


def box_iou(region: dict[str, int | float], truth: tuple[int, int, int, int]) -> float:
    """Intersection over union of a stored region box and a ground-truth (x, y, w, h) box, in frame pixels."""
    ax0, ay0, ax1, ay1 = region["x"], region["y"], region["x"] + region["w"], region["y"] + region["h"]
    bx0, by0, bx1, by1 = truth[0], truth[1], truth[0] + truth[2], truth[1] + truth[3]
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


def write_normal_frames(root: Path, count: int, seed: int) -> Path:
    """Normal frames from the simulator's own generator: the model learns the line it will watch."""
    from pipeline.dev.simulator import synthetic_frame

    folder = root / "train" / "good"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        # as the cameras send them (the simulator's JPEG at quality 90): a model trained on lossless frames
        # finds JPEG artefacts at higher input sizes
        image = synthetic_frame(rng, defect=False).image
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def run_demo(
    workdir: Path, frames: int, defect_rate: float, train_minutes: float, epochs: int = 40, size: int = 128
) -> DemoSummary:
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
            size=size,
            max_minutes=train_minutes,
            epochs=epochs,
            patience=8,
            # a quarter of the normals calibrate the threshold (the false-alarm budget's tail model)
            val_fraction=0.25,
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
    caught = [v for v in injected if v.is_defect and v.ground_truth_box is not None]
    ious = [max((box_iou(r, v.ground_truth_box) for r in v.regions), default=0.0) for v in caught]  # type: ignore[arg-type]
    return DemoSummary(
        frames_published=published.sent,
        defects_injected=published.defects_injected,
        frames_scored=stats.frames,
        defects_flagged=sum(v.is_defect for v in verdicts),
        defects_caught=sum(v.is_defect for v in injected),
        false_alarms=sum(v.is_defect and v.ground_truth == "good" for v in verdicts),
        dead_lettered=stats.dlq,
        median_box_iou=float(np.median(ious)) if ious else 0.0,
        one_box_share=float(np.mean([len(v.regions) == 1 for v in caught])) if caught else 0.0,
        alerts_received=alerts_received,
        consumer_frames_per_s=stats.frames_per_s,
        train_seconds=train_seconds,
        total_seconds=time.monotonic() - started,
        database=settings.db_url,
        model=str(model),
    )
