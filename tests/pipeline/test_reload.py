"""Hot reload inside a running consumer: a new model version takes over, a corrupt file is refused, nothing stops."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import line_settings, make_topics
from helpers import ConsumerThread, db_totals, wait_for
from model_factory import build_tiny_model, tiny_metadata
from sqlalchemy import create_engine, select

from pipeline.dev.simulator import publish_frames
from pipeline.storage.engine import migrate
from pipeline.storage.tables import Defect, ModelVersion

pytestmark = pytest.mark.integration


def replace_atomically(source: Path, target: Path) -> None:
    # Deployments should do the same (write beside, rename): a half-written file is refused anyway.
    staging = target.with_name(target.name + ".new")
    shutil.copyfile(source, staging)
    os.replace(staging, target)


def test_new_version_serves_without_a_restart_and_a_corrupt_one_is_refused(bootstrap: str, tmp_path: Path) -> None:
    serving = build_tiny_model(tmp_path / "serving.onnx", tiny_metadata(version="1"))
    version_2 = build_tiny_model(tmp_path / "v2.onnx", tiny_metadata(version="2"))
    url = f"sqlite:///{tmp_path / 'reload.db'}"
    settings = line_settings(bootstrap, url, serving, model_reload_check_s=0.2)
    make_topics(settings)
    migrate(url)
    engine = create_engine(url)

    def versions() -> list[str]:
        with engine.connect() as conn:
            return sorted(conn.scalars(select(ModelVersion.model_version)))

    consumer = ConsumerThread(settings).start()
    try:
        publish_frames(settings, count=40, rate=None, seed=1, defect_rate=0.3)
        wait_for(lambda: db_totals(url)[0] == 40, timeout=60, what="frames scored by v1")
        replace_atomically(version_2, serving)
        published = 40

        def judged_by_v2() -> bool:
            # A version is recorded with the first batch it judges: keep frames coming until v2 has judged some.
            nonlocal published
            if versions() == ["1", "2"]:
                return True
            publish_frames(settings, count=2, rate=None, seed=published, defect_rate=0.3)
            published += 2
            return False

        wait_for(judged_by_v2, timeout=30, every=0.3, what="v2 serving")
        wait_for(lambda: db_totals(url)[0] == published, timeout=60, what="frames around the switch")
        switched = published
        publish_frames(settings, count=40, rate=None, seed=2, defect_rate=0.3)
        wait_for(lambda: db_totals(url)[0] == switched + 40, timeout=60, what="frames scored by v2")
        (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
        replace_atomically(tmp_path / "bad.onnx", serving)
        publish_frames(settings, count=40, rate=None, seed=3, defect_rate=0.3)
        wait_for(lambda: db_totals(url)[0] == switched + 80, timeout=60, what="frames scored after the bad file")
    finally:
        stats = consumer.stop()
    assert stats.frames == switched + 80 and stats.dlq == 0
    with engine.connect() as conn:
        by_offset = {
            offset: version for offset, version in conn.execute(select(Defect.source_offset, Defect.model_version))
        }
    engine.dispose()
    assert {v for o, v in by_offset.items() if o < 40} == {"1"}
    assert {v for o, v in by_offset.items() if o >= switched} == {"2"}  # the corrupt file never served
