"""The batch transaction with a frame store, on SQLite and PostgreSQL: objects are written before the rows that
reference them commit, deleted when the transaction fails or the database refuses the verdict, and a crash between
the two leaves orphans that the sweep removes and a replay rewrites. A row never points at a missing object."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import frame_result
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import IntegrityError

from pipeline.alerting.rules import AlertRuleConfig, AlertRules
from pipeline.frames.store import FrameStore
from pipeline.frames.sweep import collect_garbage
from pipeline.inference import OnnxModel
from pipeline.metrics import ConsumerMetrics
from pipeline.results import FrameResult
from pipeline.settings import Settings
from pipeline.storage.engine import migrate, open_database
from pipeline.storage.tables import Defect
from pipeline.writer import Batch, BatchTransaction

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class RecordingSink:
    """Stands in for the dead-letter topic (the real one is tested against the broker in test_hostile.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, str]] = []

    def add(self, record: Any, reason: str) -> None:
        self.sent.append((record, reason))

    def flush(self) -> None:
        pass


def with_images(offset: int, defect: bool = True, camera: str = "cam-1") -> FrameResult:
    """A verdict as the judge makes it: a defect carries its frame, overlay and restored frame."""
    result = frame_result(offset, defect, camera)
    if not defect:
        return result
    return replace(
        result,
        frame=b"jpeg-%d" % offset,
        frame_content_type="image/jpeg",
        overlay_png=PNG_BYTES,
        restored_png=PNG_BYTES,
    )


def transaction(db_url: str, store: FrameStore) -> tuple[BatchTransaction, RecordingSink]:
    _, sessions = open_database(db_url)
    settings = Settings(database_url=db_url, group_id="g", db_retry_initial_s=0.01, alert_log=False)  # type: ignore[arg-type]
    rules = AlertRules(AlertRuleConfig(None, 99, 99, 0.0))
    sink = RecordingSink()
    stop = threading.Event()
    return BatchTransaction(sessions, settings, rules, [], ConsumerMetrics(), stop, sink, store), sink  # type: ignore[arg-type]


def batch_of(results: list[FrameResult], model: OnnxModel) -> Batch:
    records = [
        SimpleNamespace(topic=r.source.topic, partition=r.source.partition, offset=r.source.offset) for r in results
    ]
    offsets = {("frames", 0): max(r.source.offset for r in results) + 1}
    return Batch(len(results), results, offsets, model, time.monotonic(), records)


def stored_objects(store: FrameStore) -> set[str]:
    return {obj.uri for folder in store.objects() for obj in folder}


def rows(db_url: str) -> list[Defect]:
    _, sessions = open_database(db_url, upgrade=False)
    with sessions() as session:
        return list(session.scalars(select(Defect).order_by(Defect.source_offset)))


def referenced(db_url: str) -> set[str]:
    return {uri for d in rows(db_url) for uri in (d.frame_uri, d.overlay_uri, d.restored_uri) if uri}


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> OnnxModel:
    return OnnxModel(tiny_model, prefer_gpu=False)


def test_defects_reference_objects_written_before_the_commit(db_url: str, tmp_path: Path, model: OnnxModel) -> None:
    store = FrameStore(str(tmp_path / "frames"))
    writer, _ = transaction(db_url, store)
    batch = batch_of([with_images(0), with_images(1, defect=False), with_images(2)], model)
    written = writer.write(batch)
    assert written.defects == 2
    defects = rows(db_url)
    assert [d.source_offset for d in defects] == [0, 2]
    for d in defects:
        assert d.frame is None and d.overlay_png is None and d.restored_png is None  # no blobs any more
        assert store.read(d.frame_uri or "") == b"jpeg-%d" % d.source_offset and d.frame_content_type == "image/jpeg"
    assert referenced(db_url) == stored_objects(store) and len(stored_objects(store)) == 6
    assert writer.write(batch).fresh == []  # a replay writes nothing twice and leaves the objects in place
    assert referenced(db_url) == stored_objects(store)


def refuse(db_url: str, table: str, column: str, value: str) -> None:
    """A rule of the database's own that LineGuard knows nothing of."""
    migrate(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        if db_url.startswith("sqlite"):
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN NEW.{column} = '{value}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT refuse_{table} CHECK ({column} <> '{value}')"))
    engine.dispose()


def test_a_failed_transaction_deletes_the_objects_it_wrote(db_url: str, tmp_path: Path, model: OnnxModel) -> None:
    store = FrameStore(str(tmp_path / "frames"))
    writer, _ = transaction(db_url, store)
    refuse(db_url, "source_offsets", "topic", "frames")  # fails after the objects and the defect rows
    with pytest.raises(IntegrityError):
        writer.write(batch_of([with_images(0), with_images(1)], model))
    assert rows(db_url) == [] and stored_objects(store) == set()


def test_a_refused_verdict_leaves_no_object_behind(db_url: str, tmp_path: Path, model: OnnxModel) -> None:
    store = FrameStore(str(tmp_path / "frames"))
    writer, sink = transaction(db_url, store)
    refuse(db_url, "defects", "camera_id", "cam-poison")
    written = writer.write(batch_of([with_images(0), with_images(1, camera="cam-poison"), with_images(2)], model))
    assert written.refused == 1 and [r.offset for r, _ in sink.sent] == [1]
    assert [d.source_offset for d in rows(db_url)] == [0, 2]
    assert referenced(db_url) == stored_objects(store) and len(stored_objects(store)) == 6


def test_a_crash_before_the_commit_leaves_orphans_that_gc_removes_and_the_replay_rewrites(
    db_url: str, tmp_path: Path, model: OnnxModel
) -> None:
    store = FrameStore(str(tmp_path / "frames"))
    writer, _ = transaction(db_url, store)
    writer.write(batch_of([with_images(0)], model))
    kept = stored_objects(store)
    batch = batch_of([with_images(1), with_images(2, defect=False), with_images(3)], model)
    # The process dies after the writer put the objects and before its COMMIT: the objects stay, no row, no offset.
    store.put_results(batch.results, [])
    orphans = stored_objects(store) - kept
    assert len(orphans) == 6 and referenced(db_url) == kept
    (tmp_path / "frames" / "notes.txt").write_text("not ours")  # a file the store did not make is left alone

    young = collect_garbage(store, writer.sessions, older_than=timedelta(hours=1))
    assert (young.deleted, young.too_new, young.foreign) == (0, 9, 1)  # a batch in flight is younger than that
    swept = collect_garbage(store, writer.sessions, older_than=timedelta(0))
    assert (swept.seen, swept.deleted) == (10, 6) and stored_objects(store) == kept | {store.uri("notes.txt")}

    store.put_results(batch.results, [])  # crashed again; this time the restart replays the batch
    assert writer.write(batch).defects == 2  # the same keys: rewritten, now referenced
    assert collect_garbage(store, writer.sessions, older_than=timedelta(0)).deleted == 0
    assert referenced(db_url) == stored_objects(store) - {store.uri("notes.txt")}
    assert all(store.exists(uri) for uri in referenced(db_url))


def test_a_frame_store_outage_is_waited_out(
    db_url: str, tmp_path: Path, model: OnnxModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FrameStore(str(tmp_path / "frames"))
    writer, _ = transaction(db_url, store)
    pipe = store.fs.pipe
    failures = iter([ConnectionResetError("store unreachable"), TimeoutError("slow")])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return pipe(*args, **kwargs)

    monkeypatch.setattr(store.fs, "pipe", flaky)
    assert writer.write(batch_of([with_images(0)], model)).defects == 1
    assert writer.retries == 2 and referenced(db_url) == stored_objects(store) and len(referenced(db_url)) == 3
