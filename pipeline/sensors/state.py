"""Sensor rows of the batch transaction: each device's window state (the tail of readings, and under an adapted model
its run's baseline), anomalous windows and their alerts (the frames' rules and outbox: a device is a camera to
them), all in the batch's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from pipeline.alerting.rules import AlertRules
from pipeline.alerting.state import load_rule_state, save_rule_state
from pipeline.results import FrameResult, Source, WindowResult
from pipeline.sensors.adapt import RunBaseline
from pipeline.sensors.windows import DeviceTail
from pipeline.storage.engine import dialect_insert
from pipeline.storage.isolate import store_isolating
from pipeline.storage.store import ModelInfo, stored_offsets, write_results
from pipeline.storage.tables import SensorAnomaly, SensorWindowState

PartitionKey = tuple[str, int]


@dataclass(frozen=True)
class SensorWrite:
    """What a batch's sensor part did in the database."""

    fresh: list[WindowResult]  # stored, or below the threshold (no row to store)
    anomalies: int
    alerts: int
    refused: list[tuple[Source, DBAPIError]] = field(default_factory=list)  # records whose windows were refused


@dataclass(frozen=True)
class SavedTail:
    """A snapshot of one device's window state, taken when its batch was processed, to store with that batch."""

    topic: str
    partition: int
    channels: tuple[str, ...]
    tail: DeviceTail
    adapt_rows: int = 0  # the model's adapt_rows the state was kept for
    baseline: RunBaseline | None = None  # the current run's, once its first adapt_rows readings have arrived


def load_tails(
    session: Session, group_id: str, partitions: Iterable[PartitionKey], channels: tuple[str, ...], adapt_rows: int = 0
) -> dict[tuple[str, int, str], SavedTail]:
    """The stored window state of every device on `partitions`; a state kept for other channels, or for another
    adapt_rows (its readings would be a run's first rows or the tail after its windows, its baseline another
    run's), starts over: under an adapted model, a new run."""
    keys = sorted(set(partitions))
    if not keys:
        return {}
    rows = session.scalars(
        select(SensorWindowState).where(
            SensorWindowState.group_id == group_id,
            tuple_(SensorWindowState.topic, SensorWindowState.partition).in_(keys),
        )
    )
    tails: dict[tuple[str, int, str], SavedTail] = {}
    for row in rows:
        same = tuple(row.channels) == channels and row.adapt_rows == adapt_rows
        tail = DeviceTail(
            device_id=row.device_id,
            line_id=row.line_id,
            timestamps_ms=np.frombuffer(row.timestamps, dtype="<f8").copy() if same else np.zeros(0, np.float64),
            values=(
                np.frombuffer(row.readings, dtype="<f4").reshape(-1, len(channels)).copy()
                if same
                else np.zeros((0, len(channels)), np.float32)
            ),
            last_ts_ms=row.last_ts_ms,
            period_ms=row.period_ms,
            next_offset=row.next_offset,
        )
        baseline = (
            RunBaseline(
                np.frombuffer(row.baseline_level, dtype="<f8").copy(), np.frombuffer(row.baseline_scale, "<f8").copy()
            )
            if same and row.baseline_level is not None and row.baseline_scale is not None
            else None
        )
        tails[(row.topic, row.partition, row.device_id)] = SavedTail(
            row.topic, row.partition, channels, tail, adapt_rows, baseline
        )
    return tails


def save_tails(session: Session, group_id: str, saved: list[SavedTail], done: dict[PartitionKey, int]) -> None:
    """Upsert the states; a state no newer than the stored one (a late write of a zombie consumer) changes nothing."""
    now = datetime.now(UTC)
    for item in saved:
        tail = item.tail
        if tail.next_offset <= done.get((item.topic, item.partition), 0):
            continue  # this batch's records were applied by an earlier run
        values: dict[str, Any] = {
            "line_id": tail.line_id,
            "channels": list(item.channels),
            "timestamps": np.ascontiguousarray(tail.timestamps_ms, dtype="<f8").tobytes(),
            "readings": np.ascontiguousarray(tail.values, dtype="<f4").tobytes(),
            "last_ts_ms": tail.last_ts_ms,
            "period_ms": tail.period_ms,
            "next_offset": tail.next_offset,
            "adapt_rows": item.adapt_rows,
            "baseline_level": _float64_bytes(item.baseline.level) if item.baseline is not None else None,
            "baseline_scale": _float64_bytes(item.baseline.scale) if item.baseline is not None else None,
            "updated_at": now,
        }
        statement = dialect_insert(session, SensorWindowState).values(
            group_id=group_id, topic=item.topic, partition=item.partition, device_id=tail.device_id, **values
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["group_id", "topic", "partition", "device_id"],
                set_=values,
                where=SensorWindowState.__table__.c.next_offset < statement.excluded.next_offset,
            )
        )


def _float64_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def write_sensor_batch(
    session: Session,
    group_id: str,
    results: list[WindowResult],
    tails: list[SavedTail],
    rules: AlertRules,
    channels: list[str],
    model: ModelInfo,
) -> SensorWrite:
    """Store a batch's windows and tails; the caller owns the transaction and has locked the batch's offsets rows."""
    partitions = {(r.source.topic, r.source.partition) for r in results} | {(t.topic, t.partition) for t in tails}
    done = stored_offsets(session, group_id, sorted(partitions))
    fresh = [r for r in results if r.source.offset >= done.get((r.source.topic, r.source.partition), 0)]
    save_tails(session, group_id, tails, done)
    if not fresh:
        return SensorWrite([], 0, 0)
    by_record: dict[Source, list[WindowResult]] = {}
    for result in fresh:
        by_record.setdefault(result.source, []).append(result)
    # A record, not a window, is the unit: it is what the dead-letter topic takes, and storing some of its windows
    # would half-apply it.
    outcomes, refused_records = store_isolating(
        session,
        list(by_record.values()),
        lambda part: _store(session, [w for windows in part for w in windows], rules, channels, model),
    )
    refused = [(windows[0].source, exc) for windows, exc in refused_records]
    sources = {source for source, _ in refused}
    kept = [r for r in fresh if r.source not in sources]
    return SensorWrite(kept, sum(a for a, _ in outcomes), sum(n for _, n in outcomes), refused)


def _store(
    session: Session, windows: list[WindowResult], rules: AlertRules, channels: list[str], info: ModelInfo
) -> tuple[int, int]:
    """(anomalies written, alerts raised) of some windows."""
    anomalies = [_anomaly_row(r, info) for r in windows if r.is_anomaly]
    write_anomalies(session, anomalies)
    verdicts = [_as_verdict(r) for r in windows]
    devices = load_rule_state(session, {v.camera_id for v in verdicts})
    alerts = rules.evaluate(verdicts, info.version, devices)
    for alert in alerts:
        alert.payload["kind"] = "sensor"
    raised = write_results(session, [], alerts, channels, info, 60).alerts
    save_rule_state(session, devices)
    return len(anomalies), raised


def _as_verdict(result: WindowResult) -> FrameResult:
    """A window as the alert rules read a frame: the device is the camera, the top channels are the regions."""
    return FrameResult(
        source=result.source,
        camera_id=result.device_id,
        line_id=result.line_id,
        seq=0,
        captured_at=result.window_end,
        detected_at=result.detected_at,
        score=result.score,
        threshold=result.threshold,
        is_defect=result.is_anomaly,
        regions=[{"window_start": result.window_start.isoformat(), "top_channels": result.top_channels}],
    )


def _anomaly_row(result: WindowResult, model: ModelInfo) -> dict[str, Any]:
    return {
        "source_topic": result.source.topic,
        "source_partition": result.source.partition,
        "source_offset": result.source.offset,
        "device_id": result.device_id,
        "line_id": result.line_id,
        "window_start": result.window_start,
        "window_end": result.window_end,
        "detected_at": result.detected_at,
        "score": result.score,
        "threshold": result.threshold,
        "top_channels": result.top_channels,
        "model_name": model.name,
        "model_version": model.version,
    }


def write_anomalies(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        statement = dialect_insert(session, SensorAnomaly).on_conflict_do_nothing(
            index_elements=["source_topic", "source_partition", "source_offset", "window_start"]
        )
        session.execute(statement, rows)
