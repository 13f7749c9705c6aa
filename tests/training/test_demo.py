"""The README's first command, shortened: real broker, SQLite, a model trained on the spot, alerts."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from pipeline.storage.tables import Defect
from training.demo import run_demo


@pytest.mark.integration
def test_demo_end_to_end(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, frames=150, defect_rate=0.2, train_minutes=5.0, epochs=20)
    assert summary.frames_scored == summary.frames_published == 150
    assert summary.dead_lettered == 0
    assert summary.defects_injected > 0
    # the simulator's defects are conspicuous: a model trained for seconds must catch most of them
    assert summary.defects_caught >= 0.5 * summary.defects_injected
    # regions a reviewer can use: one box per caught defect, overlapping the injected one
    assert summary.one_box_share >= 0.8 and summary.median_box_iou >= 0.25
    # every defect raises one alert (no alert score, no burst rule), each delivered to the webhook once
    assert summary.alerts_received == summary.defects_flagged
    engine = create_engine(summary.database)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Defect)).scalar_one() == summary.defects_flagged
