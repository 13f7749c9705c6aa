"""Defect crops: the stored frame cut around the defect's strongest region, as the encoder is shown them."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ImageDecodeError
from pipeline.frames.store import FrameStore, read_defect_image
from pipeline.preprocess import decode_image
from pipeline.storage.review import DefectFilter, defects_after
from pipeline.storage.tables import Defect

log = logging.getLogger(__name__)

DECODABLE = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class Crop:
    """One defect's crop (uint8 gray or RGB) with what the encoder and the report need from its row."""

    defect_id: int
    camera_id: str
    label: str | None
    pixels: np.ndarray


def crop_box(region: Mapping[str, Any] | None, frame_hw: tuple[int, int], margin: float, min_side: int) -> tuple:
    """A square around the region's box, `margin` times its longer side (at least `min_side`), inside the frame;
    the whole frame when there is no region."""
    height, width = frame_hw
    if region is None:
        return 0, 0, width, height
    side = max(min_side, round(max(int(region["w"]), int(region["h"])) * margin))
    side = min(side, height, width)
    cx, cy = int(region["x"]) + int(region["w"]) / 2, int(region["y"]) + int(region["h"]) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return x0, y0, side, side


def defect_crop(defect: Defect, store: FrameStore | None, margin: float = 2.0, min_side: int = 32) -> np.ndarray | None:
    """The crop around the defect's strongest region (regions are stored strongest first); None when the frame is
    gone or not an encoded image (raw frames carry no shape in the row)."""
    image = read_defect_image(defect, "frame", store)
    if image is None or image[1] not in DECODABLE:
        return None
    try:
        frame = decode_image(image[0], f"defect {defect.id}")
    except ImageDecodeError as exc:
        log.warning("%s: left out", exc)
        return None
    region = defect.regions[0] if defect.regions else None
    x, y, w, h = crop_box(region, frame.shape[:2], margin, min_side)
    return frame[y : y + h, x : x + w]


def iter_crops(
    sessions: sessionmaker[Session], where: DefectFilter, store: FrameStore | None, limit: int, page: int = 200
) -> Iterator[Crop | int]:
    """Crops of the newest `limit` defects matching `where`; the id alone for a defect without a usable frame."""
    seen, last = 0, None
    while seen < limit:
        with sessions() as session:
            rows = defects_after(session, where, last, min(page, limit - seen))
            for defect in rows:
                pixels = defect_crop(defect, store)
                yield defect.id if pixels is None else Crop(defect.id, defect.camera_id, defect.label, pixels)
            if not rows:
                return
            seen, last = seen + len(rows), rows[-1]
            session.expunge(last)
