"""How well a model restores frames, measured through onnxruntime as the line runs it.

- PSNR of the restored frame against the clean image, for normal test images with Gaussian noise
  (sigma 0.05) added, next to the PSNR of the noisy input itself: above it means the model denoises.
- Defect removal: the mean change the restoration makes inside the ground-truth defect mask divided
  by the mean change outside it; above 1 means the restored frame changed the defect more than the
  rest of the part, i.e. the defect tends to disappear.
"""

from __future__ import annotations

import numpy as np

from pipeline.inference import OnnxModel
from training.data.images import LabelledSet

NOISE_SIGMA = 0.05


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def restore_in_chunks(model: OnnxModel, images: np.ndarray, chunk: int = 16) -> np.ndarray:
    return np.concatenate([model.restore(images[i : i + chunk]) for i in range(0, len(images), chunk)])


def restoration_metrics(model: OnnxModel, test_set: LabelledSet, seed: int = 0) -> dict[str, float | None]:
    good = test_set.images[test_set.labels == 0]
    noisy = np.clip(good + np.random.default_rng(seed).normal(0, NOISE_SIGMA, good.shape), 0, 1).astype(np.float32)
    restored = restore_in_chunks(model, noisy)
    result: dict[str, float | None] = {
        "psnr_noisy_input": round(float(np.mean([psnr(n, g) for n, g in zip(noisy, good, strict=True)])), 2),
        "psnr_restored": round(float(np.mean([psnr(r, g) for r, g in zip(restored, good, strict=True)])), 2),
        "defect_removal": None,
    }
    if test_set.masks is None:
        return result
    defective = np.flatnonzero((test_set.labels == 1) & test_set.masks.reshape(len(test_set.labels), -1).any(axis=1))
    if defective.size == 0:
        return result
    images = test_set.images[defective]
    change = np.abs(restore_in_chunks(model, images) - images).mean(axis=1)  # N x H x W
    masks = test_set.masks[defective]
    ratios = [c[m].mean() / max(c[~m].mean(), 1e-9) for c, m in zip(change, masks, strict=True) if (~m).any()]
    result["defect_removal"] = round(float(np.median(ratios)), 2)
    return result
