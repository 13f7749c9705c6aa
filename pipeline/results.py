"""What a batch produces: per-frame verdicts and the alerts they raise, the records the batch writer stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a record came from in Kafka."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class FrameResult:
    """The verdict on one decoded frame."""

    source: Source
    camera_id: str
    line_id: str
    seq: int
    captured_at: datetime
    detected_at: datetime
    score: float
    threshold: float
    is_defect: bool
    regions: list[dict[str, Any]] = field(default_factory=list)
    frame: bytes | None = None
    frame_content_type: str | None = None
    overlay_png: bytes | None = None
    restored_png: bytes | None = None  # the model's restored (denoised) frame, at model size
    ground_truth: str | None = None
    ground_truth_box: tuple[int, int, int, int] | None = None  # simulator frames: x, y, w, h of the injected defect

    @property
    def latency_ms(self) -> float:
        return max(0.0, (self.detected_at - self.captured_at).total_seconds() * 1000.0)


@dataclass(frozen=True)
class WindowResult:
    """The verdict on one sensor window, attributed to the record whose readings completed it."""

    source: Source
    device_id: str
    line_id: str
    window_start: datetime
    window_end: datetime
    detected_at: datetime
    score: float
    threshold: float
    is_anomaly: bool
    top_channels: list[dict[str, Any]] = field(default_factory=list)  # [{"channel", "share"}], largest first


@dataclass(frozen=True)
class RaisedAlert:
    """An alert a rule raised, to write to the outbox in the batch transaction."""

    dedupe_key: str
    rule: str
    camera_id: str
    line_id: str
    created_at: datetime
    payload: dict[str, Any]
