"""Reviewed defects as a data set in the MVTec AD layout, the one anomaly-detection tools (and `training`) read:

    OUT/train/good/<id>.png                  reviewed false positives (rejected): normal frames
    OUT/test/<label>/<id>.png                confirmed defects, a folder per label ("unlabelled" without one)
    OUT/ground_truth/<label>/<id>_mask.png   255 inside the stored region boxes, 0 elsewhere

Frames come from the frame store or an old row's blob; JPEG frames are decoded and written as PNG.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ForeignFrameURIError, LineGuardError
from pipeline.frames.store import FrameStore, read_defect_image
from pipeline.storage.frames import reviewed_defects
from pipeline.storage.tables import Defect

log = logging.getLogger(__name__)

EXPORTED_STATUSES = ("confirmed", "rejected")
UNLABELLED = "unlabelled"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportStats:
    """Frames written per folder (`train/good`, `test/<label>`), and defects left out with why."""

    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def wrote(self, folder: str) -> None:
        self.written[folder] = self.written.get(folder, 0) + 1

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def folder_name(label: str | None) -> str:
    """A label as a folder name: free text from reviewers, so nothing that could climb out of OUT."""
    name = _UNSAFE.sub("_", (label or "").strip()).strip("._") or UNLABELLED
    return "good_" if name == "good" else name  # `good` is the normal class in this layout


def region_mask(regions: Sequence[dict[str, int]], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for region in regions:
        x, y, w, h = (int(region[k]) for k in ("x", "y", "w", "h"))
        mask[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = 255
    return mask


def export_mvtec(
    sessions: sessionmaker[Session],
    out: Path,
    statuses: Sequence[str] = EXPORTED_STATUSES,
    labels: Sequence[str] = (),
    store: FrameStore | None = None,
) -> ExportStats:
    """Write the reviewed defects with these statuses (and labels, when given) under `out`; names are defect ids,
    so exporting again into the same folder rewrites the same files."""
    unknown = [s for s in statuses if s not in EXPORTED_STATUSES]
    if unknown or not statuses:
        raise LineGuardError(f"export takes reviewed defects: status must be among {EXPORTED_STATUSES}, got {unknown}")
    stats = ExportStats()
    with sessions() as session:
        for defect in reviewed_defects(session, list(statuses), list(labels)):
            folder, reason = _export_one(defect, out, store)
            if folder is not None:
                stats.wrote(folder)
            else:
                stats.skip(reason or "")
    log.info("exported %s to %s (skipped: %s)", stats.written, out, stats.skipped or "none")
    return stats


def _export_one(defect: Defect, out: Path, store: FrameStore | None) -> tuple[str | None, str | None]:
    """Write one defect's frame (and mask): (the folder it went to, None), or (None, why it could not)."""
    try:
        image = read_defect_image(defect, "frame", store)
    except ForeignFrameURIError:
        return None, "frame URI outside the frame store (refused)"
    if image is None:
        return None, "no frame (not stored, or pruned)"
    data, content_type = image
    if content_type not in ("image/png", "image/jpeg"):
        return None, f"{content_type} frame (no shape to decode it with)"
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        return None, "undecodable frame"
    name = f"{defect.id:06d}"
    if defect.review_status == "rejected":
        folder = "train/good"
    else:
        folder = f"test/{folder_name(defect.label)}"
        mask = region_mask(defect.regions, pixels.shape[0], pixels.shape[1])
        _write_png(out / "ground_truth" / folder_name(defect.label) / f"{name}_mask.png", mask, None)
    _write_png(out / folder / f"{name}.png", pixels, data if content_type == "image/png" else None)
    return folder, None


def _write_png(path: Path, pixels: np.ndarray, png: bytes | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if png is not None:
        path.write_bytes(png)  # already a PNG: byte for byte
        return
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise LineGuardError(f"cannot encode {path}")
    path.write_bytes(encoded.tobytes())
