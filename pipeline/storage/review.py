"""Defect review queries: filtered, paged listing, lookup by id, reviewers' verdicts (the CLI and the review page)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, defer

from pipeline.errors import LineGuardError, NotFoundError
from pipeline.storage.tables import Defect, ModelVersion

REVIEW_STATUSES = ("new", "confirmed", "rejected")
# A number (decimals allowed, at most 9 digits before the point) and a unit: "90s", "30m", "1.5h", "7d".
DURATION = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,9})?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Times a filter may name: nothing on a line predates 1970, and far-future years overflow date arithmetic.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
# Listing never needs the images: each row would otherwise carry up to three blobs of several MB.
_WITHOUT_IMAGES = (defer(Defect.frame), defer(Defect.overlay_png), defer(Defect.restored_png))


def parse_duration(text: str, name: str = "duration") -> timedelta:
    """ "90s", "30m", "1.5h", "7d": the one duration syntax of the CLI and the review page; `name` is the option in
    errors."""
    match = DURATION.match(text.strip())
    try:
        if match is None:
            raise ValueError(text)
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except (ValueError, OverflowError) as exc:
        raise LineGuardError(f"{name} {text[:64]!r}: use 90s, 30m, 2h or 7d (or a decimal: 1.5h)") from exc


def parse_since(text: str, now: datetime | None = None, name: str = "--since") -> datetime:
    """A duration ago ("30m", "1.5h", "7d": `parse_duration`) or an ISO 8601 time (UTC when it has no zone); `name`
    is the option in errors."""
    usage = f"{name} {text[:64]!r}: use 30m, 2h, 7d or an ISO time like 2026-11-28T10:00"
    try:
        if DURATION.match(text.strip()):
            parsed = (now or datetime.now(UTC)) - parse_duration(text, name)
        else:
            parsed = datetime.fromisoformat(text.strip())
            parsed = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise LineGuardError(usage) from exc
    if not EARLIEST <= parsed < LATEST:
        raise LineGuardError(f"{name} {text[:64]!r}: a time from {EARLIEST:%Y} to {LATEST:%Y}")
    return parsed


@dataclass(frozen=True)
class DefectFilter:
    """What a reviewer narrows the defects to; every field maps to an indexed column (None: no condition)."""

    camera: str | None = None
    line: str | None = None
    since: datetime | None = None  # captured at or after
    until: datetime | None = None  # captured before
    min_score: float | None = None
    max_score: float | None = None
    status: str | None = None
    label: str | None = None
    model_version: str | None = None
    cluster: int | None = None  # `lineguard cluster`'s id; -1 = noise

    def conditions(self) -> list[ColumnElement[bool]]:
        if self.status is not None and self.status not in REVIEW_STATUSES:
            raise LineGuardError(f"status must be one of {REVIEW_STATUSES}, got {self.status!r}")
        given = {name: value for name, value in vars(self).items() if value is not None and value != ""}
        return [_CONDITIONS[name](value) for name, value in given.items()]


# Each filter field as a condition on its column.
_CONDITIONS: dict[str, Callable[[Any], ColumnElement[bool]]] = {
    "camera": lambda value: Defect.camera_id == value,
    "line": lambda value: Defect.line_id == value,
    "since": lambda value: Defect.captured_at >= value,
    "until": lambda value: Defect.captured_at < value,
    "min_score": lambda value: Defect.score >= value,
    "max_score": lambda value: Defect.score <= value,
    "status": lambda value: Defect.review_status == value,
    "label": lambda value: Defect.label == value,
    "model_version": lambda value: Defect.model_version == value,
    "cluster": lambda value: Defect.cluster == value,
}


@dataclass(frozen=True)
class DefectPage:
    """One page of a filtered listing, newest first, with the number of rows across all pages."""

    rows: list[Defect]
    total: int
    page: int
    per_page: int
    filter: DefectFilter = field(default_factory=DefectFilter)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first_row(self) -> int:
        """1-based number of this page's first row (0 when the page is empty)."""
        return (self.page - 1) * self.per_page + 1 if self.rows else 0


def _newest_first(where: DefectFilter) -> Select[tuple[Defect]]:
    query = select(Defect).options(*_WITHOUT_IMAGES).where(*where.conditions())
    return query.order_by(Defect.captured_at.desc(), Defect.id.desc())


def list_defects(
    session: Session,
    camera: str | None = None,
    line: str | None = None,
    since: datetime | None = None,
    min_score: float | None = None,
    status: str | None = None,
    label: str | None = None,
    limit: int = 100,
    cluster: int | None = None,
) -> list[Defect]:
    """Newest first; every filter maps to an indexed column."""
    where = DefectFilter(
        camera=camera, line=line, since=since, min_score=min_score, status=status, label=label, cluster=cluster
    )
    return list(session.scalars(_newest_first(where).limit(limit)))


def page_of_defects(session: Session, where: DefectFilter, page: int = 1, per_page: int = 50) -> DefectPage:
    """Page `page` (1-based) of the defects matching `where`, and how many match in all."""
    if page < 1 or per_page < 1:
        raise LineGuardError(f"page and per_page start at 1, got page={page}, per_page={per_page}")
    total = session.scalar(select(func.count()).select_from(Defect).where(*where.conditions())) or 0
    rows = list(session.scalars(_newest_first(where).offset((page - 1) * per_page).limit(per_page)))
    return DefectPage(rows, int(total), page, per_page, where)


def defects_after(session: Session, where: DefectFilter, last: Defect | None, limit: int = 500) -> list[Defect]:
    """The next `limit` matching defects older than `last` (keyset paging: an export reads every row once,
    where OFFSET would rescan all earlier rows for each batch)."""
    query = _newest_first(where).limit(limit)
    if last is not None:
        query = query.where(_older_than(last))
    return list(session.scalars(query))


def neighbours(session: Session, where: DefectFilter, defect: Defect) -> tuple[int | None, int | None]:
    """Ids of the defects just newer and just older than `defect` among those matching `where`."""
    conditions = where.conditions()
    newer = select(Defect.id).where(*conditions, _newer_than(defect))
    older = select(Defect.id).where(*conditions, _older_than(defect))
    return (
        session.scalar(newer.order_by(Defect.captured_at.asc(), Defect.id.asc()).limit(1)),
        session.scalar(older.order_by(Defect.captured_at.desc(), Defect.id.desc()).limit(1)),
    )


def _older_than(defect: Defect) -> ColumnElement[bool]:
    at = defect.captured_at
    return or_(Defect.captured_at < at, and_(Defect.captured_at == at, Defect.id < defect.id))


def _newer_than(defect: Defect) -> ColumnElement[bool]:
    at = defect.captured_at
    return or_(Defect.captured_at > at, and_(Defect.captured_at == at, Defect.id > defect.id))


def model_versions(session: Session) -> list[str]:
    """Versions of the models that have served on this line, for the filter's suggestions."""
    return sorted(set(session.scalars(select(ModelVersion.model_version))))


def get_defect(session: Session, defect_id: int) -> Defect:
    """One defect; its images load when first read, while the session is open."""
    defect = session.get(Defect, defect_id, options=_WITHOUT_IMAGES)
    if defect is None:
        raise NotFoundError(f"no defect with id {defect_id}")
    return defect


def review_defect(
    session: Session,
    defect_id: int,
    status: str,
    label: str | None = None,
    note: str | None = None,
    reviewed_by: str | None = None,
) -> Defect:
    """Record a reviewer's verdict and label (training reads these back). `note` None keeps the note, "" clears it."""
    if status not in REVIEW_STATUSES:
        raise LineGuardError(f"status must be one of {REVIEW_STATUSES}, got {status!r}")
    # PostgreSQL refuses an over-long value, SQLite would store it: check here so both behave alike.
    for name, value, limit in (("label", label, 64), ("reviewed_by", reviewed_by, 128)):
        if value is not None and len(value) > limit:
            raise LineGuardError(f"{name} is at most {limit} characters, got {len(value)}")
    defect = get_defect(session, defect_id)
    defect.review_status = status
    defect.label = label or None
    if note is not None:
        defect.note = note or None
    defect.reviewed_by = reviewed_by
    defect.reviewed_at = datetime.now(UTC)
    return defect


# A cell starting like a formula runs as one in a spreadsheet (CSV injection); a leading quote keeps it text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def spreadsheet_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: stored strings (camera ids, labels, notes) come from the line and
    from reviewers. Every CSV of defects (the page's export, `defects list --format csv`) writes cells through it."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def summary(defect: Defect) -> dict[str, Any]:
    """The reviewable fields of a defect (no image bytes)."""
    return {
        "id": defect.id,
        "camera_id": defect.camera_id,
        "line_id": defect.line_id,
        "captured_at": utc(defect.captured_at).isoformat(),
        "detected_at": utc(defect.detected_at).isoformat(),
        "score": round(defect.score, 6),
        "threshold": defect.threshold,
        "model": f"{defect.model_name}:{defect.model_version}",
        "regions": len(defect.regions),
        "status": defect.review_status,
        "label": defect.label,
        "cluster": defect.cluster,
        "note": defect.note,
        "reviewed_by": defect.reviewed_by,
        "reviewed_at": utc(defect.reviewed_at).isoformat() if defect.reviewed_at else None,
        "source": f"{defect.source_topic}[{defect.source_partition}]@{defect.source_offset}",
    }


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything is stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
