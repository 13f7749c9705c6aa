"""MVTec-layout image folders loaded through the runtime's preprocessing into in-memory arrays."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ImageDecodeError
from pipeline.preprocess import IMAGE_SUFFIXES, InputSpec, is_color, preprocess, preprocess_mask, read_image
from training.errors import DatasetError


@dataclass(frozen=True)
class LabelledSet:
    """Test images with labels (0 good, 1 defect), masks (None where the set has none) and names."""

    images: np.ndarray  # N x C x H x W float32 in [0, 1]
    labels: np.ndarray  # N int
    masks: np.ndarray | None  # N x H x W bool
    paths: list[Path]
    defect_types: list[str]


def list_images(folder: Path) -> list[Path]:
    """Sorted image files in a folder; an error when the folder is missing or has none."""
    if not folder.is_dir():
        raise DatasetError(str(folder), "folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(str(folder), f"no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def detect_channels(files: list[Path]) -> int:
    """1 when every image is gray, 3 when every image is color; an error for a mix."""
    color = [is_color(_read(path)) for path in files]
    if all(color):
        return 3
    if not any(color):
        return 1
    first_gray = files[color.index(False)]
    first_color = files[color.index(True)]
    raise DatasetError(
        str(files[0].parent), f"mixed channel counts: {first_gray.name} is gray, {first_color.name} is color"
    )


def _read(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except ImageDecodeError as exc:
        raise DatasetError(str(path), exc.reason) from exc


def load_images(files: list[Path], spec: InputSpec) -> np.ndarray:
    """Read and preprocess files into one float32 N x C x H x W array."""
    batch = np.empty((len(files), spec.channels, spec.size, spec.size), dtype=np.float32)
    for index, path in enumerate(files):
        batch[index] = preprocess(_read(path), spec)
    return batch


def train_folder(root: Path) -> Path:
    """The folder of normal training images: `root/train/good`, or `root` itself if it holds images."""
    nested = root / "train" / "good"
    if nested.is_dir():
        return nested
    if root.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        return root
    raise DatasetError(str(root), "expected an MVTec-layout folder with train/good/ or a folder of images")


def load_test_set(root: Path, spec: InputSpec) -> LabelledSet:
    """Load `root/test/<type>/` (good = label 0) and masks from `root/ground_truth/<type>/<stem>_mask.png`."""
    test_root = root / "test"
    if not test_root.is_dir():
        raise DatasetError(str(root), "no test/ folder")
    paths: list[Path] = []
    labels: list[int] = []
    types: list[str] = []
    for type_dir in sorted(p for p in test_root.iterdir() if p.is_dir()):
        for path in list_images(type_dir):
            paths.append(path)
            labels.append(0 if type_dir.name == "good" else 1)
            types.append(type_dir.name)
    if not paths:
        raise DatasetError(str(test_root), "no test images")
    images = load_images(paths, spec)
    masks = _load_masks(root, paths, labels, types, spec)
    return LabelledSet(images, np.asarray(labels), masks, paths, types)


def _load_masks(
    root: Path, paths: list[Path], labels: list[int], types: list[str], spec: InputSpec
) -> np.ndarray | None:
    truth = root / "ground_truth"
    if not truth.is_dir():
        return None
    masks = np.zeros((len(paths), spec.size, spec.size), dtype=bool)
    for index, (path, label, kind) in enumerate(zip(paths, labels, types, strict=True)):
        if label == 0:
            continue
        mask_path = truth / kind / f"{path.stem}_mask.png"
        if not mask_path.is_file():
            raise DatasetError(str(mask_path), f"missing mask for defective image {path.name}")
        masks[index] = preprocess_mask(_read(mask_path), spec)
    return masks


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle indices and split off a validation part (at least 2 images, at least 2 left to train)."""
    if n < 4:
        raise DatasetError("train", f"need at least 4 normal images for a train/validation split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(2, round(n * fraction)), n - 2)
    return order[n_val:], order[:n_val]


def files_digest(files: list[Path]) -> str:
    """sha256 over the names and contents of the training files: ties a model to its data."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
