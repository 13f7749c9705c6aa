"""Defect rate per camera over time, summed from `inspection_counts` into buckets by the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, select
from sqlalchemy.orm import Session

from pipeline.storage.tables import InspectionCount

# Bucket lengths a chart steps through, so that its ticks fall on round times.
STEPS_S = (60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class RatePoint:
    """Frames and defects of one camera in the bucket starting at `start`."""

    start: datetime
    frames: int
    defects: int

    @property
    def rate(self) -> float:
        return self.defects / self.frames if self.frames else 0.0


@dataclass(frozen=True)
class DefectRates:
    """Per camera, its buckets in time order (empty buckets left out); `hidden` cameras did not fit the chart."""

    since: datetime
    until: datetime
    step_s: int
    series: dict[str, list[RatePoint]]
    hidden: int = 0


def bucket_step(since: datetime, until: datetime, buckets: int) -> int:
    """The shortest round bucket length that splits the window into at most `buckets` buckets."""
    span = max(1.0, (until - since).total_seconds())
    return next((step for step in STEPS_S if span / step <= buckets), STEPS_S[-1])


def defect_rates(
    session: Session,
    camera: str | None = None,
    line: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    buckets: int = 48,
    max_series: int = 10,
) -> DefectRates:
    """Defects / frames per camera and bucket. Without `until` the window ends with the newest counts (a quiet
    line still shows its last day), or now when there are none or they predate `since`; without `since` it starts
    24 hours before the end, or with the first counts after that. The `max_series` cameras with the most defects
    are kept."""
    scope: list[ColumnElement[bool]] = []
    if camera:
        scope.append(InspectionCount.camera_id == camera)
    if line:
        scope.append(InspectionCount.line_id == line)
    if until is None:
        newest = session.execute(
            select(InspectionCount.interval_start, InspectionCount.interval_s)
            .where(*scope)
            .order_by(InspectionCount.interval_start.desc())
            .limit(1)
        ).first()
        end = _utc(newest[0]) + timedelta(seconds=newest[1]) if newest is not None else None
        until = end if end is not None and (since is None or end > since) else datetime.now(UTC)
    window_given = since is not None
    since = since if since is not None else until - DEFAULT_WINDOW
    step = bucket_step(since, until, buckets)
    bucket = _epoch_seconds(session) // step
    query = (
        select(
            InspectionCount.camera_id,
            bucket.label("bucket"),
            func.sum(InspectionCount.frames),
            func.sum(InspectionCount.defects),
        )
        .where(*scope, InspectionCount.interval_start >= since, InspectionCount.interval_start < until)
        .group_by(InspectionCount.camera_id, bucket)
        .order_by(InspectionCount.camera_id, bucket)
    )
    series: dict[str, list[RatePoint]] = {}
    for camera_id, index, frames, defects in session.execute(query):
        start = datetime.fromtimestamp(int(index) * step, UTC)
        series.setdefault(camera_id, []).append(RatePoint(start, int(frames or 0), int(defects or 0)))
    if not window_given and series:
        # a line counting for less than a day: the chart starts with its first counts, not with empty hours
        since = max(since, min(points[0].start for points in series.values()))
    ranked = sorted(series, key=lambda c: (-sum(p.defects for p in series[c]), c))
    kept = {camera_id: series[camera_id] for camera_id in sorted(ranked[:max_series])}
    return DefectRates(since, until, step, kept, hidden=max(0, len(series) - max_series))


def _epoch_seconds(session: Session) -> ColumnElement[int]:
    # Integer seconds since 1970 of interval_start, spelled per database (both store UTC).
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.strftime("%s", InspectionCount.interval_start), Integer)
    return cast(func.extract("epoch", InspectionCount.interval_start), BigInteger)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
