"""Threshold calibration on score distributions whose quantiles are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.calibrate import (
    budget_threshold,
    f1_optimal_threshold,
    fit_tail,
    normal_threshold,
    score_stats,
)


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


def test_budget_threshold_reads_the_quantile_where_normals_suffice() -> None:
    scores = np.random.default_rng(0).gamma(4.0, 1.0, 100_000)
    budget = budget_threshold(scores, 1e-3)
    assert budget.method == "empirical"
    assert budget.warning is None
    assert np.mean(scores > budget.threshold) == pytest.approx(1e-3, abs=2e-4)
    assert budget.rate_interval[0] <= 1e-3 <= budget.rate_interval[1]


def test_budget_threshold_extrapolates_a_tail_and_holds_on_fresh_normals() -> None:
    rng = np.random.default_rng(1)
    budget = budget_threshold(rng.gamma(4.0, 1.0, 3000), 1e-3)
    assert budget.method == "gpd-tail"
    fresh = rng.gamma(4.0, 1.0, 1_000_000)
    # the tail model's threshold keeps the observed rate within a factor of three of the budget
    assert 1e-3 / 3 < np.mean(fresh > budget.threshold) < 3e-3
    assert 5e-4 < budget.expected_rate <= 1e-3 * 1.001  # at most the budget: never below the empirical quantile


def test_budget_threshold_warns_with_the_count_needed() -> None:
    budget = budget_threshold(np.random.default_rng(2).normal(size=40), 1e-3)
    assert budget.warning is not None and "needs at least 200" in budget.warning
    few = budget_threshold(np.random.default_rng(3).normal(size=12), 1e-3)
    assert few.method == "gaussian"
    # above every normal seen: a budget of one in a thousand never flags most of twelve normals
    assert few.threshold > 2.0
    spec = few.spec
    assert spec.n_normals == 12 and spec.rate == 1e-3 and spec.warning == few.warning


def test_budget_threshold_of_identical_scores_is_finite() -> None:
    budget = budget_threshold(np.full(500, 0.25), 1e-3)
    assert np.isfinite(budget.threshold) and budget.threshold >= 0.25


def test_budget_threshold_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        budget_threshold(np.array([1.0, np.nan]), 1e-3)
    with pytest.raises(ValueError):
        budget_threshold(np.ones(10), 0.0)


def test_a_tail_of_fewer_than_twenty_excesses_is_exponential() -> None:
    """A Pareto shape fitted to a handful of excesses swings the extrapolated threshold; below TRUSTED_TAIL excesses
    the tail is exponential with their mean as its scale, and a trustworthy tail still gets a fitted shape."""
    scores = np.random.default_rng(4).gamma(2.0, 0.3, 70)
    tail = fit_tail(scores)
    ordered = np.sort(scores)
    assert tail.shape == 0.0
    assert tail.start == ordered[-8] and tail.scale == pytest.approx(float(np.mean(ordered[-7:] - ordered[-8])))
    assert budget_threshold(scores, 1e-3).threshold == pytest.approx(tail.quantile_for(1e-3))
    assert fit_tail(np.random.default_rng(5).gamma(2.0, 0.3, 3000)).shape != 0.0
