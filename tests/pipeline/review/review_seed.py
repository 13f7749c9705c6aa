"""Real rows for the review page tests: 40 verdicts written by the batch writer's own function, 20 of them defects
with real PNG frames and overlays, on three cameras (one whose id is an HTML script tag) and two model versions."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from helpers import T0, frame_result
from sqlalchemy.orm import Session, sessionmaker

from pipeline.results import FrameResult
from pipeline.storage.store import ModelInfo, register_model, write_batch

XSS_CAMERA = "<script>alert(1)</script>"
FRAMES = 40
FRAME_SIZE = (96, 128)  # height, width


def camera_of(offset: int) -> str:
    if offset == 38:
        return XSS_CAMERA
    return "cam-1" if offset % 4 in (0, 1) else "cam-2"


def line_of(offset: int) -> str:
    return "line-2" if camera_of(offset) == "cam-2" else "line-1"


def score_of(offset: int) -> float:
    return round(0.2 + offset / 100, 2)


def version_of(offset: int) -> str:
    return "1" if offset < FRAMES // 2 else "2"


def is_defect(offset: int) -> bool:
    return offset % 2 == 0


DEFECT_OFFSETS = [o for o in range(FRAMES) if is_defect(o)]


def png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def frame_png(offset: int) -> bytes:
    """A gray surface with a bright spot where region (x=1, y=2, w=3, h=4) of helpers.frame_result says."""
    image = np.full(FRAME_SIZE, 110 + offset, np.uint8)
    cv2.rectangle(image, (1, 2), (3, 5), 250, thickness=-1)
    return png(image)


def overlay_png(offset: int) -> bytes:
    heat = np.zeros((*FRAME_SIZE, 3), np.uint8)
    heat[..., 2] = 40 + offset
    return png(heat)


def result(offset: int) -> FrameResult:
    base = frame_result(offset, is_defect(offset), camera=camera_of(offset), score=None)
    if not is_defect(offset):
        return dataclasses.replace(base, line_id=line_of(offset))
    return dataclasses.replace(
        base,
        line_id=line_of(offset),
        score=score_of(offset),
        frame=frame_png(offset),
        frame_content_type="image/png",
        overlay_png=overlay_png(offset),
        # the model's restored frame on every other defect, to show the page without one too
        restored_png=frame_png(0) if offset % 4 == 0 else None,
    )


def seed(sessions: sessionmaker[Session]) -> None:
    """Two batches (model versions 1 and 2), as the consumer's writer stores them."""
    for version in ("1", "2"):
        batch = [result(o) for o in range(FRAMES) if version_of(o) == version]
        offsets = {("frames", 0): max(r.source.offset for r in batch) + 1}
        with sessions() as session, session.begin():
            register_model(session, model_row(version))
            write_batch(session, "review-tests", batch, offsets, [], [], ModelInfo("tiny", version), 60)


def model_row(version: str) -> dict[str, object]:
    return {
        "model_name": "tiny",
        "model_version": version,
        "architecture": "cae",
        "image_threshold": 0.1,
        "pixel_threshold": 0.2,
        "path": "tiny.onnx",
        "provider": "CPUExecutionProvider",
        "first_served_at": T0,
    }


def expected_offsets(**conditions: object) -> list[int]:
    """Defect offsets matching the conditions, newest first (the page's order)."""
    checks = {
        "camera": camera_of,
        "line": line_of,
        "model_version": version_of,
    }
    chosen = [o for o in DEFECT_OFFSETS if all(checks[k](o) == v for k, v in conditions.items())]
    return sorted(chosen, reverse=True)
