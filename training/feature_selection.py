"""Fit the feature-space model, choosing among a few candidate settings on synthetic defects pasted
into the held-out normal images (never on labelled defects), then fit its image restorer.

The candidates differ in what one setting cannot get right for every line: per-frame contrast
normalisation helps dark, low-contrast parts whose exposure drifts and costs a little on well-lit
colour parts, so a run tries both and keeps the one that finds the synthetic defects best.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import torch

from training.config import TrainConfig
from training.export import ScoringGraph
from training.feature_fit import FEATURE_SHARE, fit_feature_model, fit_restorer
from training.fitting import FitSummary, copy_state, predict
from training.metrics import image_auroc, pixel_auroc
from training.models import create_model
from training.models.feature_space import FeatureSpaceAutoencoder
from training.synthetic_defects import corrupt_batch

log = logging.getLogger(__name__)

CONTRAST_CHOICES: dict[str, tuple[bool, ...]] = {"auto": (False, True), "on": (True,), "off": (False,)}


def synthetic_validation(
    model: FeatureSpaceAutoencoder, val_images: np.ndarray, donors: np.ndarray, score_pool: int, seed: int
) -> tuple[float, float]:
    """(image AUROC, pixel AUROC) separating held-out normals from copies with one synthetic defect each."""
    corrupted, masks = corrupt_batch(val_images, donors, np.random.default_rng(seed), probability=1.0)
    graph = ScoringGraph(model.cpu(), score_pool).eval()
    _, clean_scores = predict(graph, val_images)
    maps, defect_scores = predict(graph, corrupted)
    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(defect_scores))]
    image = image_auroc(np.r_[clean_scores, defect_scores], labels)
    return image, pixel_auroc(maps[:, 0], masks[:, 0] > 0.5)


def fit_best_feature_model(
    cfg: TrainConfig, channels: int, train_images: np.ndarray, val_images: np.ndarray, device: torch.device
) -> tuple[FeatureSpaceAutoencoder, FitSummary, list[dict[str, object]]]:
    """Train each candidate, keep the best on synthetic defects, train its restorer; returns it on the CPU."""
    started = time.monotonic()
    choices = CONTRAST_CHOICES[cfg.contrast]
    minutes_each = cfg.max_minutes * FEATURE_SHARE / len(choices)
    best: tuple[float, FeatureSpaceAutoencoder, FitSummary] | None = None
    report: list[dict[str, object]] = []
    for contrast in choices:
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, channels, **cfg.model_overrides(), contrast_normalize=contrast)
        assert isinstance(model, FeatureSpaceAutoencoder)
        summary = fit_feature_model(model, train_images, val_images, cfg, device, minutes_each)
        image, pixel = synthetic_validation(model, val_images, train_images, cfg.score_pool, cfg.seed + 5)
        quality = (image + pixel) / 2
        report.append({"contrast_normalize": contrast, "synthetic_image_auroc": image, "synthetic_pixel_auroc": pixel})
        log.info("contrast normalisation %s: synthetic image AUROC %.3f, pixel %.3f", contrast, image, pixel)
        if best is None or quality > best[0]:
            best = (quality, model, summary)
    assert best is not None
    _, model, summary = best
    fit_restorer(model.to(device), train_images, cfg, device, started + cfg.max_minutes * 60)
    model = model.cpu().eval()
    torch.save(copy_state(model), cfg.out.with_suffix(".ckpt.pt"))
    return model, replace(summary, minutes=(time.monotonic() - started) / 60), report
