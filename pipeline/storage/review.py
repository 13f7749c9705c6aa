"""Defect review queries: filtered listing and lookup by id (the CLI and the review page call these)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import LineGuardError, NotFoundError
from pipeline.storage.tables import Defect

REVIEW_STATUSES = ("new", "confirmed", "rejected")
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """ "30m", "2h", "7d" (ago) or an ISO 8601 time (UTC when it has no zone)."""
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise LineGuardError(f"--since {text!r}: use 30m, 2h, 7d or an ISO time like 2026-11-28T10:00") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def list_defects(
    session: Session,
    camera: str | None = None,
    line: str | None = None,
    since: datetime | None = None,
    min_score: float | None = None,
    status: str | None = None,
    label: str | None = None,
    limit: int = 100,
) -> list[Defect]:
    """Newest first; every filter maps to an indexed column."""
    query = select(Defect).order_by(Defect.captured_at.desc(), Defect.id.desc()).limit(limit)
    if camera:
        query = query.where(Defect.camera_id == camera)
    if line:
        query = query.where(Defect.line_id == line)
    if since:
        query = query.where(Defect.captured_at >= since)
    if min_score is not None:
        query = query.where(Defect.score >= min_score)
    if status:
        query = query.where(Defect.review_status == status)
    if label:
        query = query.where(Defect.label == label)
    return list(session.scalars(query))


def get_defect(session: Session, defect_id: int) -> Defect:
    defect = session.get(Defect, defect_id)
    if defect is None:
        raise NotFoundError(f"no defect with id {defect_id}")
    return defect


def review_defect(session: Session, defect_id: int, status: str, label: str | None = None) -> Defect:
    """Record a reviewer's verdict (confirmed or rejected) and optional label; training reads these back."""
    if status not in REVIEW_STATUSES:
        raise LineGuardError(f"status must be one of {REVIEW_STATUSES}, got {status!r}")
    defect = get_defect(session, defect_id)
    defect.review_status = status
    defect.label = label
    defect.reviewed_at = datetime.now(UTC)
    return defect


def summary(defect: Defect) -> dict[str, object]:
    """The reviewable fields of a defect (no image bytes)."""
    return {
        "id": defect.id,
        "camera_id": defect.camera_id,
        "line_id": defect.line_id,
        "captured_at": _utc(defect.captured_at).isoformat(),
        "detected_at": _utc(defect.detected_at).isoformat(),
        "score": round(defect.score, 6),
        "threshold": defect.threshold,
        "model": f"{defect.model_name}:{defect.model_version}",
        "regions": len(defect.regions),
        "status": defect.review_status,
        "label": defect.label,
        "source": f"{defect.source_topic}[{defect.source_partition}]@{defect.source_offset}",
    }


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
