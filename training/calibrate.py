"""Thresholds from normal scores (quantile plus a sensitivity margin), or F1-optimal on labelled data."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve

from pipeline.contract import ScoreStats


def normal_threshold(scores: np.ndarray, quantile: float, sensitivity: float) -> float:
    """quantile(scores) + sensitivity * std(scores): the margin absorbs the noise of a small normal set.

    sensitivity 0 accepts the quantile as is; larger values trade missed defects for fewer false alarms.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("calibration needs a non-empty set of finite normal scores")
    return float(np.quantile(values, quantile) + sensitivity * values.std())


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises F1 on a labelled validation set (never the test set)."""
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        raise ValueError("an F1-optimal threshold needs both good and defective validation images")
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best_cut = float(thresholds[int(np.argmax(f1[:-1]))])
    # scikit-learn's cut is inclusive (score >= cut); the line flags score > threshold, so step
    # halfway down to the next lower score to keep the same verdicts.
    below = np.asarray(scores)[np.asarray(scores) < best_cut]
    if below.size:
        return float((best_cut + below.max()) / 2)
    # Scores are float32 (onnxruntime's output): a step below the cut must survive rounding to float32.
    return float(np.nextafter(np.float32(best_cut), np.float32(-np.inf)))


def score_stats(scores: np.ndarray) -> ScoreStats:
    """Summary of normal scores stored with the model, so a threshold can be re-derived later."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    quantiles = {str(q): float(np.quantile(values, q)) for q in (0.5, 0.9, 0.95, 0.99, 0.999)}
    return ScoreStats(n=int(values.size), mean=float(values.mean()), std=float(values.std()), quantiles=quantiles)
