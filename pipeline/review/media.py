"""Image routes: a defect's frame, heatmap overlay and restored frame, and list thumbnails (all via defect_image)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response

from pipeline.errors import ForeignFrameURIError, NotFoundError
from pipeline.review.context import DefectId, review_config
from pipeline.review.images import BROWSER_TYPES, defect_image, thumbnail_jpeg
from pipeline.storage.review import get_defect

router = APIRouter()
# A defect's images never change once written; reviewers page back and forth through the same ones.
CACHE = {"Cache-Control": "private, max-age=3600"}


def _load(request: Request, defect_id: int, kinds: tuple[str, ...]) -> tuple[bytes, str] | None:
    """The first of `kinds` the defect has in a browser format (the session closes before any decoding); 403 when
    its row names an image outside the frame store."""
    config = review_config(request)
    with config.sessions() as session:
        try:
            defect = get_defect(session, defect_id)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        for kind in kinds:
            try:
                found = defect_image(defect, kind, config.store)
            except ForeignFrameURIError as exc:
                raise HTTPException(403, f"defect {defect_id}'s {kind} is not in the frame store: refused") from exc
            if found is not None and found[1] in BROWSER_TYPES:
                return found
    return None


@router.get("/defects/{defect_id}/image/{kind}", name="defect_image")
def image(request: Request, defect_id: DefectId, kind: Literal["frame", "overlay", "restored"]) -> Response:
    found = _load(request, defect_id, (kind,))
    if found is None:
        raise HTTPException(404, f"defect {defect_id} has no {kind} image a browser can show")
    return Response(found[0], media_type=found[1], headers=CACHE)


@router.get("/defects/{defect_id}/thumb.jpg", name="defect_thumb")
def thumb(request: Request, defect_id: DefectId) -> Response:
    # The frame when a browser format holds it, else the overlay (a raw frame has no picture of its own).
    found = _load(request, defect_id, ("frame", "overlay", "restored"))
    small = thumbnail_jpeg(*found) if found is not None else None
    if small is None:
        raise HTTPException(404, f"defect {defect_id} has no image to make a thumbnail of")
    return Response(small, media_type="image/jpeg", headers=CACHE)
