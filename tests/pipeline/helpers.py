"""Helpers shared by the integration tests: run a consumer in a thread, read a topic back, wait for a condition."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, func, select, text

from pipeline.consumer import ConsumerStats, run_consumer
from pipeline.dev.simulator import SimFrame, synthetic_frames
from pipeline.results import FrameResult, Source
from pipeline.settings import Settings
from pipeline.storage.tables import Defect, InspectionCount


class ConsumerThread:
    """run_consumer in a background thread; `stop()` is what SIGTERM does in a process."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.stop_event = threading.Event()
        self.frames = 0  # frames this consumer has stored so far
        self.stats: ConsumerStats | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(settings, kwargs), daemon=True)

    def _run(self, settings: Settings, kwargs: dict[str, Any]) -> None:
        try:
            self.stats = run_consumer(settings, stop=self.stop_event, on_batch=self._count, **kwargs)
        except BaseException as exc:
            self.error = exc

    def _count(self, results: list[Any]) -> None:
        self.frames += len(results)

    def start(self) -> ConsumerThread:
        self._thread.start()
        return self

    def join(self, timeout: float = 60) -> ConsumerStats:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "consumer did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats

    def stop(self, timeout: float = 60) -> ConsumerStats:
        self.stop_event.set()
        return self.join(timeout)


def wait_for(condition: Callable[[], bool], timeout: float = 60, every: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def read_topic(settings: Settings, topic: str, expected: int, timeout: float = 20) -> list[Any]:
    """Every record of partition 0 of `topic`, by manual assignment (no group join)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_options(), enable_auto_commit=False, group_id=None)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    # One more short poll: anything beyond `expected` would be a duplicate.
    for batch in consumer.poll(timeout_ms=300).values():
        records.extend(batch)
    consumer.close()
    return records


def db_totals(url: str) -> tuple[int, int, int]:
    """(frames counted, defect rows, distinct defect offsets)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            frames = conn.scalar(select(func.coalesce(func.sum(InspectionCount.frames), 0)))
            defects = conn.scalar(select(func.count()).select_from(Defect))
            distinct = conn.scalar(
                text("SELECT COUNT(*) FROM (SELECT DISTINCT source_partition, source_offset FROM defects) d")
            )
    finally:
        engine.dispose()
    return int(frames or 0), int(defects or 0), int(distinct or 0)


def expected_frames(seed: int, count: int, defect_rate: float, size: int = 256) -> list[SimFrame]:
    """The frames `publish_frames(source="synthetic", seed=...)` sends, in order (seq = index)."""
    return list(itertools.islice(synthetic_frames(seed, size, defect_rate), count))


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0, min(ax1, bx1) - max(a[0], b[0]))
    h = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = w * h
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


def frame_result(offset: int, defect: bool, camera: str = "cam-1", score: float | None = None) -> FrameResult:
    """A verdict on frame `offset` of topic "frames" (50 ms after capture), with one region when defective."""
    return FrameResult(
        source=Source("frames", 0, offset),
        camera_id=camera,
        line_id="line-1",
        seq=offset,
        captured_at=T0 + timedelta(seconds=offset),
        detected_at=T0 + timedelta(seconds=offset, milliseconds=50),
        score=score if score is not None else (0.5 if defect else 0.01),
        threshold=0.1,
        is_defect=defect,
        regions=[{"x": 1, "y": 2, "w": 3, "h": 4, "area": 12, "peak": 0.5}] if defect else [],
    )


def committed_offset(settings: Settings) -> int | None:
    """The group's committed offset on partition 0 (a consumer that asks without joining the group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_options(), group_id=settings.group_id, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(settings.frames_topic, 0))
    finally:
        consumer.close(autocommit=False)
