"""Alert rule state in the database: loaded (row-locked) and saved inside the batch transaction that uses it."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.alerting.rules import CameraState, DriftState
from pipeline.storage.engine import dialect_insert_for, per_dialect
from pipeline.storage.tables import AlertRuleState


def load_rule_state(session: Session, cameras: set[str]) -> dict[str, CameraState]:
    """The saved state of `cameras` (absent ones start empty); rows are locked until the transaction ends."""
    if not cameras:
        return {}
    rows = session.scalars(
        select(AlertRuleState).where(AlertRuleState.camera_id.in_(sorted(cameras))).with_for_update()
    )
    return {
        row.camera_id: CameraState(
            window=deque(bool(v) for v in row.window),
            last_alert={rule: datetime.fromisoformat(at) for rule, at in row.last_alert.items()},
            drift=DriftState.from_json(row.drift),
        )
        for row in rows
    }


def save_rule_state(session: Session, cameras: dict[str, CameraState]) -> None:
    if not cameras:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "camera_id": camera_id,
            "window": [int(v) for v in state.window],
            "last_alert": {rule: at.isoformat() for rule, at in state.last_alert.items()},
            "drift": state.drift.to_json(),
            "updated_at": now,
        }
        for camera_id, state in cameras.items()
    ]
    session.execute(_state_upsert(session), rows)


@per_dialect
def _state_upsert(dialect: str) -> Any:
    """Write each camera's rule state, replacing what was there; built once per dialect."""
    statement = dialect_insert_for(dialect, AlertRuleState.__table__)
    excluded = statement.excluded
    kept = ("window", "last_alert", "drift", "updated_at")
    return statement.on_conflict_do_update(index_elements=["camera_id"], set_={name: excluded[name] for name in kept})


def camera_drift(session: Session, camera: str | None = None, limit: int = 50) -> list[tuple[str, DriftState]]:
    """Each camera's stored drift (one camera's where given), most recently updated first; cameras that track none
    (their model has no false-alarm budget) are left out."""
    query = select(AlertRuleState).order_by(AlertRuleState.updated_at.desc()).limit(limit)
    if camera is not None:
        query = query.where(AlertRuleState.camera_id == camera)
    states = ((row.camera_id, DriftState.from_json(row.drift)) for row in session.scalars(query))
    return [(camera_id, state) for camera_id, state in states if state.frames > 0]
