"""The batch transaction: defects, inspection counts, alerts with their deliveries and source offsets, all at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from pipeline.results import FrameResult, RaisedAlert, Source
from pipeline.storage.engine import dialect_insert, dialect_insert_for, per_dialect
from pipeline.storage.tables import Alert, AlertDelivery, Defect, InspectionCount, ModelVersion, SourceOffset


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str


@dataclass(frozen=True)
class WriteResult:
    defects: int
    alerts: int


def stored_offsets(
    session: Session, group_id: str, partitions: list[tuple[str, int]], lock: bool = False
) -> dict[tuple[str, int], int]:
    """Next offset recorded in the database per (topic, partition) for this group (row-locked if `lock`)."""
    if not partitions:
        return {}
    query = select(SourceOffset.topic, SourceOffset.partition, SourceOffset.next_offset).where(
        SourceOffset.group_id == group_id,
        tuple_(SourceOffset.topic, SourceOffset.partition).in_(partitions),
    )
    rows = session.execute(query.with_for_update() if lock else query)
    return {(topic, partition): next_offset for topic, partition, next_offset in rows}


def fresh_results(
    session: Session, group_id: str, results: list[FrameResult], batch_offsets: dict[tuple[str, int], int]
) -> list[FrameResult]:
    """Drop results already applied by an earlier run (their offset is below the stored next offset)."""
    # Row locks (PostgreSQL) make a zombie consumer that still writes a partition wait, then skip.
    done = stored_offsets(session, group_id, list(batch_offsets), lock=True)
    return [r for r in results if r.source.offset >= done.get((r.source.topic, r.source.partition), 0)]


def write_batch(
    session: Session,
    group_id: str,
    results: list[FrameResult],
    batch_offsets: dict[tuple[str, int], int],
    alerts: list[RaisedAlert],
    channels: list[str],
    model: ModelInfo,
    interval_s: int,
) -> WriteResult:
    """Write one batch; the caller owns the transaction. `results` must already be filtered by `fresh_results`."""
    written = write_results(session, results, alerts, channels, model, interval_s)
    advance_offsets(session, group_id, batch_offsets)
    return written


def write_results(
    session: Session,
    results: list[FrameResult],
    alerts: list[RaisedAlert],
    channels: list[str],
    model: ModelInfo,
    interval_s: int,
    frame_refs: Mapping[Source, Mapping[str, str]] | None = None,
) -> WriteResult:
    """Defects, inspection counts and alerts (with a pending delivery per channel) of some verdicts.

    With `frame_refs` (the frame store's URIs by source record and kind: frame, overlay, restored) the defect rows
    reference their images; without, they hold them (how every row was written before the frame store)."""
    defects = [_defect_row(r, model, frame_refs) for r in results if r.is_defect]
    if defects:
        statement = dialect_insert(session, Defect).on_conflict_do_nothing(
            index_elements=["source_topic", "source_partition", "source_offset"]
        )
        session.execute(statement, defects)
    _add_counts(session, results, interval_s)
    raised = _add_alerts(session, alerts, channels)
    return WriteResult(defects=len(defects), alerts=raised)


def _defect_row(
    result: FrameResult, model: ModelInfo, frame_refs: Mapping[Source, Mapping[str, str]] | None
) -> dict[str, Any]:
    refs = frame_refs.get(result.source, {}) if frame_refs is not None else {}
    blobs = frame_refs is None
    return {
        "source_topic": result.source.topic,
        "source_partition": result.source.partition,
        "source_offset": result.source.offset,
        "camera_id": result.camera_id,
        "line_id": result.line_id,
        "seq": result.seq,
        "captured_at": result.captured_at,
        "detected_at": result.detected_at,
        "score": result.score,
        "threshold": result.threshold,
        "model_name": model.name,
        "model_version": model.version,
        "regions": result.regions,
        "frame_content_type": result.frame_content_type,
        "frame": result.frame if blobs else None,
        "overlay_png": result.overlay_png if blobs else None,
        "restored_png": result.restored_png if blobs else None,
        "frame_uri": refs.get("frame"),
        "overlay_uri": refs.get("overlay"),
        "restored_uri": refs.get("restored"),
        "ground_truth": result.ground_truth,
        "review_status": "new",
    }


def _add_counts(session: Session, results: list[FrameResult], interval_s: int) -> None:
    totals: dict[tuple[str, datetime], dict[str, Any]] = {}
    for r in results:
        start = datetime.fromtimestamp(int(r.captured_at.timestamp()) // interval_s * interval_s, UTC)
        row = totals.setdefault(
            (r.camera_id, start),
            {"camera_id": r.camera_id, "line_id": r.line_id, "interval_start": start, "interval_s": interval_s}
            | {"frames": 0, "defects": 0, "score_sum": 0.0, "latency_ms_sum": 0.0, "latency_ms_max": 0.0},
        )
        row["frames"] += 1
        row["defects"] += int(r.is_defect)
        row["score_sum"] += r.score
        row["latency_ms_sum"] += r.latency_ms
        row["latency_ms_max"] = max(row["latency_ms_max"], r.latency_ms)
    if totals:
        session.execute(_counts_upsert(session), list(totals.values()))


@per_dialect
def _counts_upsert(dialect: str) -> Any:
    """Add a batch's counts to each (camera, interval) row, creating it if new; built once per dialect."""
    table = InspectionCount.__table__
    statement = dialect_insert_for(dialect, table)
    excluded = statement.excluded
    greatest = func.max if dialect == "sqlite" else func.greatest  # SQLite's two-argument max() is its GREATEST
    return statement.on_conflict_do_update(
        index_elements=["camera_id", "interval_start"],
        set_={
            "frames": table.c.frames + excluded.frames,
            "defects": table.c.defects + excluded.defects,
            "score_sum": table.c.score_sum + excluded.score_sum,
            "latency_ms_sum": table.c.latency_ms_sum + excluded.latency_ms_sum,
            "latency_ms_max": greatest(table.c.latency_ms_max, excluded.latency_ms_max),
        },
    )


def _add_alerts(session: Session, alerts: list[RaisedAlert], channels: list[str]) -> int:
    raised = 0
    for alert in alerts:
        statement = (
            dialect_insert(session, Alert)
            .values(
                dedupe_key=alert.dedupe_key,
                rule=alert.rule,
                camera_id=alert.camera_id,
                line_id=alert.line_id,
                created_at=alert.created_at,
                payload=alert.payload,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(Alert.id)
        )
        alert_id = session.execute(statement).scalar()
        if alert_id is None:
            continue  # raised before (replay)
        raised += 1
        for channel in channels:
            session.add(
                AlertDelivery(
                    alert_id=alert_id, channel=channel, status="pending", attempts=0, next_attempt_at=alert.created_at
                )
            )
    return raised


def advance_offsets(session: Session, group_id: str, batch_offsets: dict[tuple[str, int], int]) -> None:
    if not batch_offsets:
        return
    now = datetime.now(UTC)
    rows = [
        {"group_id": group_id, "topic": topic, "partition": partition, "next_offset": offset, "updated_at": now}
        for (topic, partition), offset in batch_offsets.items()
    ]
    session.execute(_offsets_upsert(session), rows)


@per_dialect
def _offsets_upsert(dialect: str) -> Any:
    """Move each partition's stored next offset forward, never back; built once per dialect."""
    table = SourceOffset.__table__
    statement = dialect_insert_for(dialect, table)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["group_id", "topic", "partition"],
        set_={"next_offset": excluded.next_offset, "updated_at": excluded.updated_at},
        where=table.c.next_offset < excluded.next_offset,
    )


def register_model(session: Session, info: dict[str, Any]) -> None:
    """Record a model version the first time it serves (name + version unique)."""
    statement = (
        dialect_insert(session, ModelVersion)
        .values(**info)
        .on_conflict_do_nothing(index_elements=["model_name", "model_version"])
    )
    session.execute(statement)
