"""The evaluation set of a retraining, fixed and written down: held-out normal images (a seeded split of --normal),
reviewed confirmed defects and reviewed false positives, each with its sha256, in `<model>.evalset.json`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data.reviewed import ReviewedFrame
from training.errors import DatasetError

HELD_OUT_NORMAL = "held_out_normal"
CONFIRMED_DEFECT = "confirmed_defect"
FALSE_POSITIVE = "reviewed_false_positive"
GROUPS = (HELD_OUT_NORMAL, CONFIRMED_DEFECT, FALSE_POSITIVE)


@dataclass(frozen=True)
class EvalImage:
    """One image of the evaluation set: label 1 for a confirmed defect, 0 otherwise."""

    group: str
    label: int
    file: str
    sha256: str
    defect_id: int | None = None
    source: str | None = None  # topic[partition]@offset of a reviewed frame

    @property
    def name(self) -> str:
        return f"defect {self.defect_id} ({self.source})" if self.defect_id is not None else Path(self.file).name


@dataclass(frozen=True)
class EvaluationSet:
    images: list[EvalImage]
    details: dict[str, Any]  # how it was drawn: normal folder, hold-out fraction and seed, review window

    @property
    def digest(self) -> str:
        """sha256 over the groups and image digests: two reports on the same digest judged the same images."""
        lines = sorted(f"{image.group} {image.sha256}" for image in self.images)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def of(self, *groups: str) -> list[EvalImage]:
        return [image for image in self.images if image.group in groups]

    def counts(self) -> dict[str, int]:
        return {group: len(self.of(group)) for group in GROUPS}

    def write(self, path: Path) -> None:
        data = {"digest": self.digest, **self.details, "images": [asdict(image) for image in self.images]}
        path.write_text(json.dumps(data, indent=2) + "\n")


def split_normals(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(kept for training, held out for evaluation): a seeded draw over the sorted files, at least 2 each way."""
    if len(files) < 6:
        raise DatasetError(
            str(files[0].parent if files else "normal"), f"need at least 6 normal images, got {len(files)}"
        )
    ordered = sorted(files)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_held = min(max(2, round(len(ordered) * fraction)), len(ordered) - 4)
    held = sorted(ordered[i] for i in order[:n_held])
    kept = sorted(ordered[i] for i in order[n_held:])
    return kept, held


def build_evaluation_set(
    held_out: list[Path], confirmed: list[ReviewedFrame], false_positives: list[ReviewedFrame], details: dict[str, Any]
) -> EvaluationSet:
    images = [EvalImage(HELD_OUT_NORMAL, 0, str(path), _sha256(path)) for path in held_out]
    for group, label, frames in ((CONFIRMED_DEFECT, 1, confirmed), (FALSE_POSITIVE, 0, false_positives)):
        images += [EvalImage(group, label, str(f.path), f.sha256, f.defect_id, f.source) for f in frames]
    return EvaluationSet(images, details)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
