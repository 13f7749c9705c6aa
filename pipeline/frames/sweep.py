"""Frame store upkeep: the orphan sweep (objects no row references) and retention (images of old defects).

Both keep the rule that a row never points at a missing object: the sweep deletes only what no row references
while holding the partitions' batch writers, retention clears the references (committed) before it deletes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from pipeline.frames.store import FrameStore, StoredObject, parse_key
from pipeline.results import Source
from pipeline.storage.frames import clear_images, expired_images, lock_partitions, referenced_uris

log = logging.getLogger(__name__)

CHUNK = 500  # objects or rows per transaction: short locks, bounded memory


@dataclass
class SweepStats:
    """What one sweep did: objects seen, deleted; objects left alone because they are too new or not the store's."""

    seen: int = 0
    deleted: int = 0
    too_new: int = 0
    foreign: int = 0


@dataclass
class PruneStats:
    """What one retention pass did: defects whose images were dropped, objects deleted."""

    defects: int = 0
    objects: int = 0


def collect_garbage(
    store: FrameStore, sessions: sessionmaker[Session], older_than: timedelta, now: datetime | None = None
) -> SweepStats:
    """Delete objects written more than `older_than` ago that no defect row references: what a crash between the
    objects' write and the batch's commit left (a batch in flight is younger than that), and a failed cleanup."""
    cutoff = (now or datetime.now(UTC)) - older_than
    stats = SweepStats()
    for folder in store.objects():
        stats.seen += len(folder)
        candidates: list[tuple[StoredObject, Source]] = []
        for obj in folder:
            parsed = parse_key(obj.key)
            if parsed is None:
                stats.foreign += 1  # not a key this store makes: someone else's file
            elif obj.modified is None or obj.modified > cutoff:
                stats.too_new += 1
            else:
                candidates.append((obj, parsed[0]))
        for start in range(0, len(candidates), CHUNK):
            stats.deleted += _delete_unreferenced(store, sessions, candidates[start : start + CHUNK])
    log.info("frames gc: %d objects, %d deleted (unreferenced, older than %s)", stats.seen, stats.deleted, cutoff)
    return stats


def _delete_unreferenced(
    store: FrameStore, sessions: sessionmaker[Session], candidates: list[tuple[StoredObject, Source]]
) -> int:
    sources = [source for _, source in candidates]
    with sessions() as session, session.begin():
        lock_partitions(session, {(s.topic, s.partition) for s in sources})
        referenced = referenced_uris(session, sources)
        orphans = [obj.uri for obj, _ in candidates if obj.uri not in referenced]
        store.delete(orphans)  # inside the transaction: no writer of these partitions commits meanwhile
    return len(orphans)


def prune_frames(
    store: FrameStore, sessions: sessionmaker[Session], retention_days: float, now: datetime | None = None
) -> PruneStats:
    """Drop the images of defects detected more than `retention_days` ago: their references (and the blobs of rows
    from before the store) are cleared and committed first, then the objects deleted; the verdicts stay."""
    before = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    stats = PruneStats()
    last_id = 0
    while True:
        with sessions() as session, session.begin():
            expired = expired_images(session, before, last_id, CHUNK)
            clear_images(session, [defect_id for defect_id, _ in expired])
        last_id = expired[-1][0] if expired else last_id
        uris = [uri for _, defect_uris in expired for uri in defect_uris]
        store.discard(uris)  # what fails here is an orphan for `frames gc`; no row references it any more
        stats.defects += len(expired)
        stats.objects += len(uris)
        if len(expired) < CHUNK:
            break
    if stats.defects:
        log.info("frames prune: images of %d defects detected before %s dropped", stats.defects, before)
    return stats


class RetentionSweeper:
    """A thread that applies `frame_retention_days` every `every_s` seconds while the consumer runs (each consumer
    of a group does; passes are idempotent)."""

    def __init__(
        self, store: FrameStore, sessions: sessionmaker[Session], retention_days: float, every_s: float = 3600.0
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.retention_days = retention_days
        self.every_s = every_s
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-retention", daemon=True)

    def start(self) -> RetentionSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                prune_frames(self.store, self.sessions, self.retention_days)
            except Exception:
                # The database or the store is down: the next pass catches up; the line must not stop for this.
                log.exception("frames prune failed; retrying in %.0fs", self.every_s)
            self.passes += 1
            self._stop.wait(self.every_s)
