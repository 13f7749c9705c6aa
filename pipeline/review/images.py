"""A defect's images for the page: the one function that reads them, their size, and thumbnails made from them."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.frames.store import FrameStore, read_defect_image
from pipeline.imageheader import ImageHeaderError, jpeg_header, png_header
from pipeline.storage.tables import Defect

KINDS = ("frame", "overlay", "restored")
# What a browser shows; a raw frame (application/x-raw) is kept for training but has no picture here.
BROWSER_TYPES = frozenset({"image/png", "image/jpeg"})
THUMB_BOX = 160
# JPEG decodes straight to 1/2, 1/4 or 1/8 size (libjpeg scales in the DCT): a thumbnail of a large frame is
# made without inflating all its pixels.
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def defect_image(defect: Defect, kind: str, store: FrameStore) -> tuple[bytes, str] | None:
    """Bytes and content type of a defect's frame, heatmap overlay or restored frame; None when it has none.

    Every image the page serves comes through here: from the configured frame store by the URI its row holds, or
    from the blob columns of rows written before the store (pipeline/frames/store.py). A URI outside the store raises
    ForeignFrameURIError.
    """
    return read_defect_image(defect, kind, store)


def image_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """(width, height) from the PNG or JPEG header, without decoding; None for anything else."""
    try:
        if content_type == "image/png":
            header = png_header(data)
        elif content_type == "image/jpeg":
            header = jpeg_header(data)
        else:
            return None
    except ImageHeaderError:
        return None
    return header.width, header.height


def thumbnail_jpeg(data: bytes, content_type: str, box: int = THUMB_BOX) -> bytes | None:
    """A JPEG at most `box` pixels on its longer side; None when the bytes are not a PNG or JPEG image."""
    if content_type not in BROWSER_TYPES:
        return None
    flags = cv2.IMREAD_COLOR
    size = image_size(data, content_type)
    if content_type == "image/jpeg" and size is not None:
        flags = next((flag for factor, flag in _REDUCED if max(size) // factor >= box), flags)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        return None
    height, width = image.shape[:2]
    scale = box / max(height, width)
    if scale < 1:
        size_out = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size_out, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 82])
    return encoded.tobytes() if ok else None
