"""Condition labels of the training images of a conditional model: the subfolder of train/good an image lies in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.contract import UNKNOWN_CONDITION, ConditionSpec
from pipeline.preprocess import IMAGE_SUFFIXES
from training.errors import DatasetError


@dataclass(frozen=True)
class ConditionedFiles:
    """Training files, the condition index of each (0: directly in the folder, unknown) and the vocabulary."""

    files: list[Path]
    indices: np.ndarray  # int64 per file
    values: tuple[str, ...]  # values[i] is index i + 1

    def spec(self, source: str) -> ConditionSpec:
        return ConditionSpec(source=source, values=self.values)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def conditioned_files(folder: Path) -> ConditionedFiles:
    """Images of `folder/<value>/` get condition `<value>` (the sorted subfolder names are the vocabulary); images
    directly in `folder` train the unconditional path only."""
    values = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and _images(p)))
    files, indices = _images(folder), [UNKNOWN_CONDITION] * len(_images(folder))
    for index, value in enumerate(values, start=1):
        found = _images(folder / value)
        files += found
        indices += [index] * len(found)
    if not files:
        raise DatasetError(str(folder), "no images, neither directly nor in condition subfolders")
    return ConditionedFiles(files, np.array(indices, dtype=np.int64), values)
