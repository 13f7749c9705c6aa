"""Scale-out: a second consumer joins the group mid-stream, then the first stops; every frame is stored exactly once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import line_settings, make_topics
from helpers import ConsumerThread, db_totals, wait_for
from sqlalchemy import create_engine, func, select

from pipeline.dev.simulator import publish_frames
from pipeline.storage.engine import migrate
from pipeline.storage.tables import SourceOffset

pytestmark = pytest.mark.integration

CAMERAS = ("cam-a", "cam-b", "cam-c", "cam-d", "cam-e", "cam-f")
PER_CAMERA = 150


def test_consumers_joining_and_leaving_share_the_work_without_duplicates(
    bootstrap: str, tmp_path: Path, tiny_model: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'group.db'}"
    settings = line_settings(bootstrap, url, tiny_model, batch_size=8)
    make_topics(settings, partitions=4)
    migrate(url)
    # Cameras publish at a steady pace for several seconds, so the group changes while frames flow.
    cameras = [
        threading.Thread(
            target=publish_frames,
            args=(settings,),
            kwargs={"count": PER_CAMERA, "rate": 15.0, "camera": name, "seed": index},
            daemon=True,
        )
        for index, name in enumerate(CAMERAS)
    ]
    total = PER_CAMERA * len(CAMERAS)
    first = ConsumerThread(settings).start()
    second = ConsumerThread(settings)
    try:
        for camera in cameras:
            camera.start()
        wait_for(lambda: first.frames >= 20, timeout=60, what="first consumer working")
        second.start()
        wait_for(lambda: second.frames > 0, timeout=60, what="second consumer assigned after the rebalance")
        first.stop()
        wait_for(lambda: db_totals(url)[0] == total, timeout=90, what="second consumer taking over")
    finally:
        first.stop_event.set()
        second.stop_event.set()
        for camera in cameras:
            camera.join(30)
    second.join()
    frames, defects, distinct = db_totals(url)
    assert frames == total and defects == distinct
    assert first.frames + second.frames == total
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.sum(SourceOffset.next_offset))) == total
    engine.dispose()
