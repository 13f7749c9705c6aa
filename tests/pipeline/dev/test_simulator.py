"""Simulator sources: an MVTec-style folder (truth from the folder name, masks skipped) and synthetic frames."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import line_settings, make_topics
from helpers import read_topic

from pipeline.dev.simulator import folder_frames, publish_frames, synthetic_frame
from pipeline.wire import parse_headers


def mvtec_folder(root: Path) -> Path:
    image = np.full((40, 60), 120, np.uint8)
    for sub, count in (("train/good", 2), ("test/good", 1), ("test/scratch", 2), ("ground_truth/scratch", 2)):
        folder = root / "bottle" / sub
        folder.mkdir(parents=True)
        for index in range(count):
            cv2.imwrite(str(folder / f"{index:03d}.png"), image)
    return root / "bottle"


def test_folder_source_takes_truth_from_the_folder_and_skips_masks(tmp_path: Path) -> None:
    frames = list(itertools.islice(folder_frames(mvtec_folder(tmp_path)), 5))
    assert sorted(f.ground_truth for f in frames) == ["good", "good", "good", "scratch", "scratch"]
    assert all(f.image.shape == (40, 60) for f in frames)


def test_synthetic_defect_box_covers_the_defect() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        frame = synthetic_frame(rng, defect=True)
        assert frame.bbox is not None
        x, y, w, h = frame.bbox
        good = synthetic_frame(np.random.default_rng(0)).image
        assert frame.image.shape == good.shape and w > 0 and h > 0 and x + w <= 256 and y + h <= 256


@pytest.mark.integration
def test_publish_a_folder_with_ground_truth_headers(bootstrap: str, tmp_path: Path) -> None:
    settings = line_settings(bootstrap, "sqlite://", None)
    make_topics(settings)
    stats = publish_frames(settings, source=str(mvtec_folder(tmp_path)), count=7, rate=None, camera="cam-3")
    assert stats.sent == 7
    records = read_topic(settings, settings.frames_topic, expected=7)
    metas = [parse_headers(r.headers) for r in records]
    assert [m.seq for m in metas] == list(range(7))
    assert {m.ground_truth for m in metas} <= {"good", "scratch"} and {m.camera_id for m in metas} == {"cam-3"}
    assert stats.defects_injected == sum(m.ground_truth == "scratch" for m in metas)
