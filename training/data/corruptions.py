"""Named input corruptions for denoising training: what a model learns to undo decides which defects it exposes.

Every corruption returns (inputs, masks N x 1 x H x W); a mask marks what a segmentation head should call a defect,
so noise corruptions (which are not defects) leave it empty, and only `synthetic` and `mask` teach the `cae` head.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.data.synthetic_defects import corrupt_batch

Corrupted = tuple[np.ndarray, np.ndarray]


def _empty_masks(clean: np.ndarray) -> np.ndarray:
    return np.zeros((len(clean), 1, *clean.shape[-2:]), dtype=np.float32)


def _chosen(rng: np.random.Generator, count: int, probability: float) -> np.ndarray:
    return np.flatnonzero(rng.random(count) < probability)


def gaussian(clean: np.ndarray, rng: np.random.Generator, probability: float, level: float) -> Corrupted:
    """Additive Gaussian noise of standard deviation `level` (sensor noise, JPEG grain)."""
    inputs = clean.copy()
    for index in _chosen(rng, len(clean), probability):
        noise = rng.normal(0.0, level, clean.shape[1:]).astype(np.float32)
        inputs[index] = np.clip(clean[index] + noise, 0, 1)
    return inputs, _empty_masks(clean)


def salt_pepper(clean: np.ndarray, rng: np.random.Generator, probability: float, level: float) -> Corrupted:
    """A share `level` of the pixels set to black or white (dead pixels, dust)."""
    inputs = clean.copy()
    for index in _chosen(rng, len(clean), probability):
        hit = rng.random(clean.shape[-2:]) < level
        inputs[index][:, hit] = rng.integers(0, 2, int(hit.sum())).astype(np.float32)
    return inputs, _empty_masks(clean)


def masking(clean: np.ndarray, rng: np.random.Generator, probability: float, level: float) -> Corrupted:
    """One to four rectangles blanked to a flat grey: the model must inpaint them from context (masked autoencoder).

    `level` is the share of the image the rectangles cover in total, on average.
    """
    inputs, masks = clean.copy(), _empty_masks(clean)
    size = clean.shape[-1]
    for index in _chosen(rng, len(clean), probability):
        count = int(rng.integers(1, 5))
        side = max(2, int(size * np.sqrt(level / count) * rng.uniform(0.7, 1.3)))
        for _ in range(count):
            y, x = (int(v) for v in rng.integers(0, max(1, size - side), 2))
            inputs[index][:, y : y + side, x : x + side] = rng.random()
            masks[index, 0, y : y + side, x : x + side] = 1.0
    return inputs, masks


def no_corruption(clean: np.ndarray, rng: np.random.Generator, probability: float, level: float) -> Corrupted:
    """A plain autoencoder: reconstruct the input as it is."""
    return clean.copy(), _empty_masks(clean)


Corruption = Callable[[np.ndarray, np.random.Generator, float, float], Corrupted]
NOISES: dict[str, Corruption] = {
    "gaussian": gaussian,
    "salt-pepper": salt_pepper,
    "mask": masking,
    "none": no_corruption,
}
CORRUPTIONS = ("synthetic", *NOISES)  # `synthetic` also takes donor images, so it is called apart


def corrupt(
    kind: str, clean: np.ndarray, donors: np.ndarray, rng: np.random.Generator, probability: float, level: float
) -> Corrupted:
    """Corrupt each image with `probability`; `synthetic` pastes defects (training/data/synthetic_defects.py)."""
    if kind == "synthetic":  # needs the donor images other corruptions do not
        return corrupt_batch(clean, donors, rng, probability)
    return NOISES[kind](clean, rng, probability, level)
