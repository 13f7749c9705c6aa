"""Frame simulator: publishes synthetic frames or an image folder (MVTec layout) to Kafka at a given rate."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from pipeline.preprocess import IMAGE_SUFFIXES, read_image
from pipeline.settings import Settings
from pipeline.wire import JPEG, EncodedFrame, encode_frame


@dataclass(frozen=True)
class SimFrame:
    """One frame to publish with its ground truth (kept in headers for measurement)."""

    image: np.ndarray
    ground_truth: str  # "good" or a defect type
    bbox: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class PublishStats:
    """What a simulator run sent."""

    sent: int
    defects_injected: int
    bytes_sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def synthetic_frame(rng: np.random.Generator, size: int = 256, defect: bool = False) -> SimFrame:
    """A smooth lit surface (what a blur-based model reconstructs well), optionally with one sharp defect."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    image = 90.0 + 60.0 * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6) + rng.uniform(-10, 10)
    frame = np.clip(image, 0, 255).astype(np.uint8)
    if not defect:
        return SimFrame(frame, "good")
    side = int(rng.integers(size // 16, size // 6))
    x, y = (int(v) for v in rng.integers(size // 16, size - side - size // 16, size=2))
    kind = str(rng.choice(["spot", "scratch"]))
    value = 250 if rng.random() < 0.5 else 10
    if kind == "spot":
        cv2.rectangle(frame, (x, y), (x + side - 1, y + side - 1), value, thickness=-1)
        return SimFrame(frame, "spot", (x, y, side, side))
    thickness = max(2, side // 6)
    cv2.line(frame, (x, y), (x + side - 1, y + side - 1), value, thickness=thickness)
    pad = thickness // 2 + 1
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(size, x + side - 1 + pad + 1), min(size, y + side - 1 + pad + 1)
    return SimFrame(frame, "scratch", (x0, y0, x1 - x0, y1 - y0))


def synthetic_frames(seed: int = 0, size: int = 256, defect_rate: float = 0.1) -> Iterator[SimFrame]:
    rng = np.random.default_rng(seed)
    while True:
        yield synthetic_frame(rng, size, defect=bool(rng.random() < defect_rate))


def folder_frames(root: Path, seed: int = 0) -> Iterator[SimFrame]:
    """Images under root, shuffled, repeated; the parent folder names the truth ("good" or a defect type).

    In the MVTec layout (`<category>/{train,test}/<type>/*.png`, masks under `ground_truth/`) good and
    defective images come mixed; the masks themselves are skipped.
    """
    files = sorted(
        p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and "ground_truth" not in p.parts
    )
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    rng = np.random.default_rng(seed)
    while True:
        for index in rng.permutation(len(files)):
            path = files[int(index)]
            yield SimFrame(read_image(path), path.parent.name)


def frame_source(source: str, seed: int = 0, size: int = 256, defect_rate: float = 0.1) -> Iterator[SimFrame]:
    """ "synthetic" or a folder path."""
    if source == "synthetic":
        return synthetic_frames(seed, size, defect_rate)
    return folder_frames(Path(source), seed)


def encode_sim_frame(
    frame: SimFrame, camera: str, line: str, seq: int, content_type: str = JPEG, jpeg_quality: int = 90
) -> EncodedFrame:
    return encode_frame(
        frame.image,
        camera_id=camera,
        line_id=line,
        seq=seq,
        captured_at=datetime.now(UTC),
        content_type=content_type,
        jpeg_quality=jpeg_quality,
        ground_truth=frame.ground_truth,
        ground_truth_bbox=frame.bbox,
    )


def publish_frames(
    settings: Settings,
    topic: str | None = None,
    source: str = "synthetic",
    count: int = 100,
    rate: float | None = None,
    camera: str = "cam-1",
    line: str = "line-1",
    seed: int = 0,
    defect_rate: float = 0.1,
    content_type: str = JPEG,
    size: int = 256,
) -> PublishStats:
    """Publish `count` frames to `topic` (default settings.frames_topic) at `rate` frames/s (None: as fast as possible).

    Returns once every frame is acknowledged by the broker.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=5, batch_size=1 << 20)
    frames = frame_source(source, seed, size, defect_rate)
    interval = 1.0 / rate if rate else 0.0
    injected = sent_bytes = 0
    start = time.monotonic()
    try:
        for seq, frame in enumerate(itertools.islice(frames, count)):
            if interval:
                # Pace against the start time, not the previous frame, so slow sends do not drift the rate.
                delay = start + seq * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            encoded = encode_sim_frame(frame, camera, line, seq, content_type)
            producer.send(topic or settings.frames_topic, key=encoded.key, value=encoded.value, headers=encoded.headers)
            injected += frame.ground_truth != "good"
            sent_bytes += len(encoded.value)
        producer.flush()
    finally:
        producer.close()
    return PublishStats(sent=count, defects_injected=injected, bytes_sent=sent_bytes, seconds=time.monotonic() - start)
