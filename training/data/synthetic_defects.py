"""Synthetic defects pasted onto normal images, so a denoising model learns what 'not normal' looks
like without any external data (the idea behind DRAEM): blotches, scratches and foreign textures."""

from __future__ import annotations

import cv2
import numpy as np


def blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random blotch: thresholded smooth noise (a cheap stand-in for Perlin noise), float HxW in {0,1}."""
    for _ in range(8):
        cells = int(rng.choice([4, 8, 16]))
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        smooth = cv2.GaussianBlur(smooth, (0, 0), sigmaX=size / cells / 3)
        threshold = np.quantile(smooth, rng.uniform(0.93, 0.995))
        mask = (smooth > threshold).astype(np.float32)
        if mask.sum() >= 4:
            return mask
    return mask


def scratch_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """One to three thin random polylines, float HxW in {0,1}."""
    mask = np.zeros((size, size), dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        points = [rng.uniform(0, size, 2)]
        step = size * rng.uniform(0.05, 0.15)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(3, 8))):
            angle += rng.normal(0, 0.4)
            points.append(points[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
        poly = np.clip(np.array(points), 0, size - 1).astype(np.int32)
        thickness = max(1, round(size * rng.uniform(0.005, 0.02)))
        cv2.polylines(mask, [poly], isClosed=False, color=1.0, thickness=thickness)
    return mask


def foreign_texture(rng: np.random.Generator, image: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """What fills the defect: another normal image warped and recoloured, noise, or a flat colour."""
    channels, size, _ = image.shape
    choice = rng.random()
    if choice < 0.5 and len(donors):
        donor = donors[int(rng.integers(len(donors)))].transpose(1, 2, 0)
        angle, scale = rng.uniform(0, 360), rng.uniform(0.5, 2.0)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-size / 4, size / 4, 2)
        warped = cv2.warpAffine(donor, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)
        warped = warped.reshape(size, size, channels).transpose(2, 0, 1)
        gain = rng.uniform(0.5, 1.5, (channels, 1, 1)).astype(np.float32)
        return np.clip(warped * gain + rng.uniform(-0.3, 0.3), 0, 1)
    if choice < 0.8:
        cells = int(rng.choice([size // 2, size // 4, size // 8]))
        noise = rng.random((cells, cells, channels)).astype(np.float32)
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, channels)
        return noise.transpose(2, 0, 1)
    return np.broadcast_to(rng.random((channels, 1, 1)).astype(np.float32), image.shape)


def add_defect(image: np.ndarray, donors: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paste one synthetic defect onto a C x H x W image in [0,1]; returns (corrupted image, H x W mask)."""
    size = image.shape[-1]
    mask = scratch_mask(rng, size) if rng.random() < 0.3 else blob_mask(rng, size)
    texture = foreign_texture(rng, image, donors)
    opacity = rng.uniform(0.3, 1.0)
    blend = mask[None] * opacity
    corrupted = image * (1 - blend) + texture * blend
    return corrupted.astype(np.float32), mask


def corrupt_batch(
    clean: np.ndarray, donors: np.ndarray, rng: np.random.Generator, probability: float
) -> tuple[np.ndarray, np.ndarray]:
    """Add a defect to each image with the given probability; returns (inputs, masks N x 1 x H x W)."""
    inputs = clean.copy()
    masks = np.zeros((len(clean), 1, *clean.shape[-2:]), dtype=np.float32)
    for index in range(len(clean)):
        if rng.random() < probability:
            inputs[index], masks[index, 0] = add_defect(clean[index], donors, rng)
    return inputs, masks


# The validation set that chooses between models and settings: harder and more varied than what the denoising
# models train on, so that a model cannot score 1.000 on it by spotting one kind of paste (a check that said
# 1.000 where real parts said 0.75 was measuring itself). One defect of each kind per held-out normal image.
VALIDATION_KINDS = ("patch", "faint", "crack", "small", "edge")


def validation_defect(
    image: np.ndarray, donors: np.ndarray, rng: np.random.Generator, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """One defect of `kind` on a C x H x W image in [0, 1]; returns (image, H x W mask in {0, 1})."""
    size = image.shape[-1]
    if kind == "crack":  # thin, low-contrast line: darker or brighter than what it crosses, not a foreign texture
        mask = thin_crack_mask(rng, size)
        shift = rng.uniform(0.12, 0.35) * (1 if rng.random() < 0.5 else -1)
        corrupted = np.clip(image + shift * mask[None], 0.0, 1.0)
        return corrupted.astype(np.float32), mask
    if kind in ("small", "edge"):
        mask = small_blob_mask(rng, size, at_edge=kind == "edge")
        opacity = rng.uniform(0.5, 1.0)
    else:
        mask = blob_mask(rng, size)
        opacity = rng.uniform(0.6, 1.0) if kind == "patch" else rng.uniform(0.12, 0.3)
    texture = foreign_texture(rng, image, donors)
    blend = mask[None] * opacity
    return (image * (1 - blend) + texture * blend).astype(np.float32), mask


def thin_crack_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """One random polyline of one to three pixels at 224 px, a tenth to a third of the image long."""
    mask = np.zeros((size, size), dtype=np.float32)
    point = rng.uniform(0.15 * size, 0.85 * size, 2)
    angle = rng.uniform(0, 2 * np.pi)
    length = size * rng.uniform(0.1, 0.33)
    steps = int(rng.integers(3, 7))
    points = [point]
    for _ in range(steps):
        angle += rng.normal(0, 0.35)
        points.append(points[-1] + length / steps * np.array([np.cos(angle), np.sin(angle)]))
    poly = np.clip(np.array(points), 0, size - 1).astype(np.int32)
    cv2.polylines(mask, [poly], isClosed=False, color=1.0, thickness=max(1, round(size * rng.uniform(0.004, 0.012))))
    return mask


def small_blob_mask(rng: np.random.Generator, size: int, at_edge: bool) -> np.ndarray:
    """An ellipse covering 0.1 % to 0.6 % of the image; `at_edge` puts it within the outer twentieth of the frame."""
    mask = np.zeros((size, size), dtype=np.float32)
    area = size * size * rng.uniform(0.001, 0.006)
    ratio = rng.uniform(0.5, 2.0)
    axes = (max(1, round(np.sqrt(area / np.pi * ratio))), max(1, round(np.sqrt(area / np.pi / ratio))))
    if at_edge:
        band = max(2, size // 20)
        along, across = rng.uniform(0, size), rng.uniform(0, band)
        side = int(rng.integers(4))
        centre = [(along, across), (along, size - 1 - across), (across, along), (size - 1 - across, along)][side]
    else:
        centre = tuple(rng.uniform(0.1 * size, 0.9 * size, 2))
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, rng.uniform(0, 180), 0, 360, 1.0, thickness=-1)
    return mask


def validation_set(clean: np.ndarray, donors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every held-out normal with one defect of each validation kind: (images, masks N x 1 x H x W, kinds)."""
    rng = np.random.default_rng(seed)
    images, masks, kinds = [], [], []
    for kind in VALIDATION_KINDS:
        for image in clean:
            corrupted, mask = validation_defect(image, donors, rng, kind)
            images.append(corrupted)
            masks.append(mask[None])
            kinds.append(kind)
    return np.stack(images), np.stack(masks).astype(np.float32), kinds
