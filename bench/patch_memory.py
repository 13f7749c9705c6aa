"""Reference row for the detection table: a nearest-neighbour patch memory on the same backbone features.

Not a LineGuard model (the default must be an autoencoder): it shows how far the autoencoders are
from a memory of every normal patch. Features as `feature-cae` sees them (same backbone taps,
neighbourhood averaging, standardisation); the memory is a random subsample of the normal patches
(PatchCore picks a greedy coreset instead, which costs more than the whole budget on 2 cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from pipeline.preprocess import InputSpec
from training.config import TrainConfig
from training.data.images import detect_channels, list_images, load_images, load_test_set, split_validation
from training.data.images import train_folder as find_train_folder
from training.evaluation.calibrate import budget_threshold
from training.evaluation.detection_metrics import (
    aupro,
    image_auroc,
    maximum_on_border,
    per_type_auroc,
    pixel_auroc,
    threshold_metrics,
)
from training.models.blocks import ModelOutput
from training.models.feature_cae.model import FeatureCAE, FeatureCAEConfig
from training.models.feature_space.fit import extract_features
from training.models.feature_space.model import upsample_to
from training.models.scoring import ScoringGraph
from training.ssim import gaussian_blur

MEMORY_PATCHES = 60_000
QUERY_CHUNK = 4096


class PatchMemory(torch.nn.Module):
    """Distance of each location's feature to the nearest normal patch in memory."""

    def __init__(self, features: FeatureCAE, memory: torch.Tensor) -> None:
        super().__init__()
        self.features = features
        self.memory = memory

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> ModelOutput:
        f = self.features
        merged = (f.merge(f.extract(image)) - f.feature_mean) / f.feature_std
        n, c, h, w = merged.shape
        queries = merged.permute(0, 2, 3, 1).reshape(-1, c)
        chunks = [queries[i : i + QUERY_CHUNK] for i in range(0, len(queries), QUERY_CHUNK)]
        nearest = torch.cat([torch.cdist(chunk, self.memory).amin(dim=1) for chunk in chunks])
        distance = nearest.reshape(n, 1, h, w)
        # no restoration: the input stands in for the reconstruction output
        return ModelOutput(image, gaussian_blur(upsample_to(distance, image.shape[-1]), f.smooth_kernel))


def patch_memory_row(data_dir: Path, size: int = 224, seed: int = 0) -> dict[str, object]:
    """Fit on train/good, threshold from held-out normals, evaluate on test/; the same columns as the models."""
    started = time.monotonic()
    files = list_images(find_train_folder(data_dir))
    spec = InputSpec(size, detect_channels(files), "stretch")
    images = load_images(files, spec)
    train_idx, val_idx = split_validation(len(images), 0.1, seed)
    features = FeatureCAE(FeatureCAEConfig(channels=spec.channels, image_size=size)).eval()
    cached = extract_features(features, images[train_idx], torch.device("cpu"))
    features.fit_statistics(cached)
    merged = (features.merge(cached) - features.feature_mean) / features.feature_std
    patches = merged.permute(0, 2, 3, 1).reshape(-1, merged.shape[1])
    pick = torch.randperm(len(patches), generator=torch.Generator().manual_seed(seed))[:MEMORY_PATCHES]
    scorer = ScoringGraph(PatchMemory(features, patches[pick].clone()), max(3, (size // 12) | 1))
    fit_minutes = (time.monotonic() - started) / 60

    _, val_scores = score_all(scorer, images[val_idx])
    threshold = budget_threshold(val_scores, TrainConfig.false_alarm_rate).threshold
    test = load_test_set(data_dir, spec)
    maps, scores = score_all(scorer, test.images)
    has_masks = test.masks is not None and bool(test.masks.any())
    return {
        "image_auroc": image_auroc(scores, test.labels),
        "pixel_auroc": pixel_auroc(maps, test.masks) if has_masks else None,
        "aupro": aupro(maps, test.masks) if has_masks else None,
        **threshold_metrics(scores, test.labels, threshold),
        "max_on_border": maximum_on_border(maps[test.labels == 0])[0],
        "per_type_auroc": per_type_auroc(scores, test.labels, test.defect_types),
        "train_minutes": round(fit_minutes, 2),
        "epochs": 0,
        "stopped_by": "no training",
    }


@torch.no_grad()
def score_all(scorer: ScoringGraph, images: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    maps, scores = [], []
    for start in range(0, len(images), batch):
        _, anomaly_map, score = scorer(torch.from_numpy(images[start : start + batch]))
        maps.append(anomaly_map[:, 0].numpy())
        scores.append(score.numpy())
    return np.concatenate(maps), np.concatenate(scores)
