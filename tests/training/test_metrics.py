"""Metrics against scikit-learn and against cases whose AUPRO is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from training.evaluation.detection_metrics import (
    aupro,
    image_auroc,
    maximum_on_border,
    per_type_auroc,
    pixel_auroc,
    threshold_metrics,
)


def test_image_auroc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = labels * 0.5 + rng.random(200)
    assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_pixel_auroc_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((3, 16, 16)) > 0.8
    maps = masks * 0.3 + rng.random((3, 16, 16))
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_threshold_metrics_match_sklearn_with_strict_rule() -> None:
    scores = np.array([0.1, 0.5, 0.5, 0.9, 0.3])
    labels = np.array([0, 1, 0, 1, 1])
    result = threshold_metrics(scores, labels, threshold=0.5)
    assert result["f1"] == pytest.approx(f1_score(labels, scores > 0.5))
    assert result["precision"] == 1.0
    assert result["recall"] == pytest.approx(1 / 3)


def square_masks() -> np.ndarray:
    masks = np.zeros((4, 32, 32), dtype=bool)
    masks[0, 4:12, 4:12] = True
    masks[1, 20:30, 2:5] = True
    masks[1, 2:4, 25:29] = True  # a second, small region in the same image
    return masks


def test_aupro_perfect_map_is_one() -> None:
    masks = square_masks()
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0, abs=1e-3)


def test_aupro_random_map_is_chance() -> None:
    # For random scores the overlap of every region equals the FPR, so the normalised area up to
    # FPR 0.3 is 0.3 / 2 = 0.15.
    rng = np.random.default_rng(0)
    masks = np.zeros((50, 64, 64), dtype=bool)
    masks[:, 10:40, 10:40] = True
    assert aupro(rng.random(masks.shape), masks) == pytest.approx(0.15, abs=0.01)


def test_aupro_weights_regions_equally() -> None:
    # Big region found, small region missed: per-region overlap is 0.5 at FPR 0, whatever the sizes.
    # With a binary map the curve then runs straight to (1, 1): PRO(0.3) = 0.65, area/0.3 = 0.575.
    masks = np.zeros((1, 64, 64), dtype=bool)
    masks[0, 0:40, 0:40] = True
    masks[0, 60:62, 60:62] = True
    maps = np.zeros((1, 64, 64))
    maps[0, 0:40, 0:40] = 1.0
    assert aupro(maps, masks) == pytest.approx(0.575, abs=0.005)


def test_aupro_needs_both_pixel_kinds() -> None:
    with pytest.raises(ValueError, match="both"):
        aupro(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), dtype=bool))


def test_maximum_on_border_counts_maps_whose_peak_is_in_the_outer_band() -> None:
    maps = np.zeros((4, 56, 56), dtype=np.float32)
    maps[0, 0, 30] = 1.0  # top edge
    maps[1, 30, 55] = 1.0  # right edge
    maps[2, 28, 28] = 1.0  # centre
    maps[3, 10, 10] = 1.0  # inside (band is 4 px at 56)
    share, area = maximum_on_border(maps)
    assert share == 0.5
    assert area == pytest.approx(1 - (48 * 48) / (56 * 56))


def test_per_type_auroc_compares_each_type_with_the_good_images() -> None:
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.15])
    labels = np.array([0, 0, 1, 1, 1])
    result = per_type_auroc(scores, labels, ["good", "good", "crack", "crack", "stain"])
    assert result == {"crack": 1.0, "stain": 0.5}
