"""Threshold calibration on score distributions whose quantiles are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import f1_optimal_threshold, normal_threshold, score_stats


def test_quantile_of_uniform_scores() -> None:
    scores = np.linspace(0, 1, 100_001)
    assert normal_threshold(scores, 0.99, sensitivity=0.0) == pytest.approx(0.99, abs=1e-4)


def test_sensitivity_adds_standard_deviations() -> None:
    scores = np.random.default_rng(0).normal(10.0, 2.0, 200_000)
    threshold = normal_threshold(scores, 0.5, sensitivity=1.0)
    assert threshold == pytest.approx(12.0, abs=0.05)  # median 10 + 1 std


def test_normal_threshold_rejects_nan_and_empty() -> None:
    with pytest.raises(ValueError, match="finite"):
        normal_threshold(np.array([0.1, np.nan]), 0.99, 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        normal_threshold(np.array([]), 0.99, 0.0)


def test_f1_optimal_threshold_separates_clean_classes() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    threshold = f1_optimal_threshold(scores, labels)
    assert 0.3 < threshold < 0.7
    # the line's rule is score > threshold; the lowest defect must still be caught
    assert np.array_equal(scores > threshold, labels.astype(bool))


def test_f1_optimal_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both good and defective"):
        f1_optimal_threshold(np.array([0.1, 0.2]), np.array([0, 0]))


def test_score_stats() -> None:
    stats = score_stats(np.arange(101, dtype=float))
    assert stats.n == 101
    assert stats.mean == pytest.approx(50.0)
    assert stats.quantiles["0.5"] == pytest.approx(50.0)
