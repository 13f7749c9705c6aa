"""A small MVTec-layout data set generated on the fly (textured parts with painted defects), for the demo
and the tests: no download, no licence question, and ground truth by construction."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEFECT_KINDS = ("scratch", "spot")


def normal_part(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gray machined-metal surface: fine directional texture, mild shading, a centred bore."""
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), sigmaX=4.0, sigmaY=0.6)
    texture = texture / (np.abs(texture).max() + 1e-6)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)[None, :] * rng.uniform(-10, 10)
    image = 140 + 18 * texture + ramp
    cv2.circle(image, (size // 2, size // 2), size // 6, 70.0, thickness=-1)
    image += rng.normal(0, 2, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def paint_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scratch or a spot; returns the defective image and its 0/255 mask."""
    size = image.shape[0]
    mask = np.zeros_like(image)
    margin = size // 8
    if kind == "scratch":
        start = rng.integers(margin, size - margin, 2)
        end = np.clip(start + rng.integers(-size // 3, size // 3, 2), margin, size - margin)
        thickness = max(1, size // 64)
        cv2.line(mask, (int(start[0]), int(start[1])), (int(end[0]), int(end[1])), 255, thickness)
        value = 230
    else:
        center = rng.integers(margin, size - margin, 2)
        axes = (int(rng.integers(size // 32, size // 12) + 1), int(rng.integers(size // 32, size // 12) + 1))
        cv2.ellipse(mask, (int(center[0]), int(center[1])), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        value = 40
    defective = image.copy()
    defective[mask > 0] = value
    return defective, mask


def write_synthetic_dataset(
    root: Path, n_train: int = 60, n_test_good: int = 10, n_test_defect: int = 10, size: int = 128, seed: int = 0
) -> Path:
    """Write `root/train/good`, `root/test/{good,<kind>}` and `root/ground_truth/<kind>` PNGs; returns root."""
    rng = np.random.default_rng(seed)
    for folder in [
        "train/good",
        "test/good",
        *(f"test/{k}" for k in DEFECT_KINDS),
        *(f"ground_truth/{k}" for k in DEFECT_KINDS),
    ]:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(n_train):
        cv2.imwrite(str(root / "train/good" / f"{index:04d}.png"), normal_part(rng, size))
    for index in range(n_test_good):
        cv2.imwrite(str(root / "test/good" / f"{index:04d}.png"), normal_part(rng, size))
    for index in range(n_test_defect):
        kind = DEFECT_KINDS[index % len(DEFECT_KINDS)]
        image, mask = paint_defect(normal_part(rng, size), kind, rng)
        cv2.imwrite(str(root / f"test/{kind}" / f"{index:04d}.png"), image)
        cv2.imwrite(str(root / f"ground_truth/{kind}" / f"{index:04d}_mask.png"), mask)
    return root
