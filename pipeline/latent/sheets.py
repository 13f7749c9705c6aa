"""Contact sheets: a grid of crops, one picture per cluster, for a person to see what a cluster holds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.preprocess import convert_channels, resize


def contact_sheet(
    images: Sequence[np.ndarray], captions: Sequence[str] = (), tile: int = 96, gap: int = 4
) -> np.ndarray:
    """RGB uint8 grid of the images, each letterboxed into a tile (aspect kept), with an optional caption each."""
    columns = max(1, math.ceil(math.sqrt(len(images))))
    rows = max(1, math.ceil(len(images) / columns))
    sheet = np.full((rows * (tile + gap) + gap, columns * (tile + gap) + gap, 3), 255, np.uint8)
    for index, image in enumerate(images):
        cell = resize(convert_channels(image, 3), tile, "letterbox")
        if index < len(captions):
            cv2.putText(cell, captions[index], (2, tile - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 0), 1)
        top, left = gap + (index // columns) * (tile + gap), gap + (index % columns) * (tile + gap)
        sheet[top : top + tile, left : left + tile] = cell
    return sheet


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or gray) uint8 image as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"cannot write {path}")
    return path


def strip(images: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Images of one size side by side (an interpolation), RGB uint8, white gaps."""
    cells = [convert_channels(image, 3) for image in images]
    height = cells[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    parts = [part for cell in cells for part in (cell, spacer)][:-1]
    return np.concatenate(parts, axis=1)
