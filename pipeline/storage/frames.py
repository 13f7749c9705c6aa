"""Queries over the defects' images: which objects rows reference, which rows are past retention, what to export."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import or_, select, tuple_, update
from sqlalchemy.orm import Session

from pipeline.results import Source
from pipeline.storage.tables import Defect, SourceOffset

URI_COLUMNS = (Defect.frame_uri, Defect.overlay_uri, Defect.restored_uri)
BLOB_COLUMNS = (Defect.frame, Defect.overlay_png, Defect.restored_png)


def lock_partitions(session: Session, partitions: Iterable[tuple[str, int]]) -> None:
    """Hold the batch writers of these partitions (every group) until the transaction ends: a writer locks the same
    rows before it writes objects, so a replay cannot re-reference an object while a sweep deletes it (SQLite's
    BEGIN IMMEDIATE already holds every writer)."""
    wanted = sorted(set(partitions))
    if wanted:
        query = select(SourceOffset.id).where(tuple_(SourceOffset.topic, SourceOffset.partition).in_(wanted))
        session.execute(query.with_for_update())


def referenced_uris(session: Session, sources: Iterable[Source]) -> set[str]:
    """The URIs the defect rows of these source records reference."""
    keys = sorted({(s.topic, s.partition, s.offset) for s in sources})
    if not keys:
        return set()
    columns = (Defect.source_topic, Defect.source_partition, Defect.source_offset)
    rows = session.execute(select(*URI_COLUMNS).where(tuple_(*columns).in_(keys)))
    return {uri for row in rows for uri in row if uri}


def expired_images(session: Session, before: datetime, after_id: int, limit: int) -> list[tuple[int, list[str]]]:
    """Up to `limit` defects detected before `before` that still hold images, by id from `after_id` on (each chunk
    starts where the last ended instead of rescanning the rows already cleared): (id, the URIs they reference)."""
    held = or_(*(column.is_not(None) for column in (*URI_COLUMNS, *BLOB_COLUMNS)))
    query = select(Defect.id, *URI_COLUMNS).where(Defect.id > after_id, Defect.detected_at < before, held)
    query = query.order_by(Defect.id).limit(limit)
    return [(row[0], [uri for uri in row[1:] if uri]) for row in session.execute(query)]


def clear_images(session: Session, ids: list[int]) -> None:
    """Drop the image references and blobs of these defects (their verdict, regions and review stay)."""
    if ids:
        cleared = {column.key: None for column in (*URI_COLUMNS, *BLOB_COLUMNS)}
        session.execute(update(Defect).where(Defect.id.in_(ids)).values(cleared))


def reviewed_defects(session: Session, statuses: list[str], labels: list[str]) -> Iterator[Defect]:
    """Defects with one of these review statuses (and labels, when given), oldest first, streamed."""
    query = select(Defect).where(Defect.review_status.in_(statuses)).order_by(Defect.id)
    if labels:
        query = query.where(Defect.label.in_(labels))
    yield from session.scalars(query.execution_options(yield_per=200))
