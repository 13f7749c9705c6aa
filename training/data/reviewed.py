"""Frames reviewers labelled, read back from the defects table for retraining: false positives (`rejected`: normal
frames the model flagged) and confirmed defects, each written to a file whose sha256 goes into the manifests."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.frames.store import read_defect_image
from pipeline.storage.tables import Defect

log = logging.getLogger(__name__)

FALSE_POSITIVE = "rejected"  # a reviewer's "not a defect": the frame is normal
CONFIRMED = "confirmed"
SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png"}  # raw frames carry no shape in the row: not readable back


@dataclass(frozen=True)
class ReviewedFrame:
    """One reviewed defect's frame, written to `path`."""

    defect_id: int
    source: str  # topic[partition]@offset
    status: str
    label: str | None
    score: float  # what the serving model scored it
    path: Path
    sha256: str


def frame_bytes(defect: Defect) -> tuple[bytes, str] | None:
    """The one place retraining reads a defect's frame: the frame store, or the row's blob for rows from before it."""
    return read_defect_image(defect, "frame")


def export_reviewed(
    session: Session, status: str, folder: Path, since: datetime | None = None
) -> tuple[list[ReviewedFrame], list[str]]:
    """Write the frames of the defects reviewed as `status` (captured at or after `since`) into `folder`, oldest first;
    returns them and, for those left out, why (no image kept, a raw frame, bytes that do not decode)."""
    query = select(Defect.id).where(Defect.review_status == status).order_by(Defect.captured_at, Defect.id)
    if since is not None:
        query = query.where(Defect.captured_at >= since)
    folder.mkdir(parents=True, exist_ok=True)
    frames: list[ReviewedFrame] = []
    skipped: list[str] = []
    for defect_id in list(session.scalars(query)):
        defect = session.get(Defect, defect_id)
        assert defect is not None
        source = f"{defect.source_topic}[{defect.source_partition}]@{defect.source_offset}"
        image = frame_bytes(defect)
        problem = _unreadable(image)
        if problem is not None:
            skipped.append(f"defect {defect_id} ({source}): {problem}")
        else:
            assert image is not None
            data, content_type = image
            path = folder / f"defect-{defect_id}{SUFFIXES[content_type]}"
            path.write_bytes(data)
            sha256 = hashlib.sha256(data).hexdigest()
            frames.append(ReviewedFrame(defect_id, source, status, defect.label, float(defect.score), path, sha256))
        session.expunge(defect)  # one frame's bytes in memory at a time
    if skipped:
        log.warning("%d %s frames left out: %s", len(skipped), status, "; ".join(skipped[:5]))
    return frames, skipped


def _unreadable(image: tuple[bytes, str] | None) -> str | None:
    if image is None:
        return "no frame kept (store_images off, or pruned from the frame store)"
    data, content_type = image
    if content_type not in SUFFIXES:
        return f"{content_type} frames cannot be read back (their shape is not stored)"
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return f"bytes do not decode as {content_type}"
    return None
