"""Detection metrics: image and pixel AUROC (scikit-learn), AUPRO, and F1 at a fixed threshold."""

from __future__ import annotations

import cv2
import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    return float(roc_auc_score(masks.ravel().astype(np.uint8), maps.ravel()))


def threshold_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """F1, precision and recall of the verdict `score > threshold` (the rule the line applies)."""
    predicted = (np.asarray(scores) > threshold).astype(int)
    return {
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
    }


def aupro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3, bins: int = 1000) -> float:
    """Area under the per-region-overlap curve up to `max_fpr`, normalised to [0, 1].

    Each connected defect region counts equally whatever its size (Bergmann et al., MVTec AD). The
    threshold sweep is done with histograms over shared bins, so the cost is linear in pixels.
    """
    maps = np.asarray(maps, dtype=np.float64).reshape(masks.shape)
    masks = masks.astype(bool)
    if not masks.any() or masks.all():
        raise ValueError("AUPRO needs both defect and normal pixels")
    edges = np.linspace(maps.min(), maps.max(), bins + 1)
    # fraction of normal pixels / of each region's pixels at or above each threshold edge
    fpr = _tail_fraction(maps[~masks], edges)
    overlaps = [
        _tail_fraction(maps[index][labels == region], edges)
        for index in range(len(masks))
        for labels, count in [_regions(masks[index])]
        for region in range(1, count)
    ]
    pro = np.mean(overlaps, axis=0)
    # fpr falls as the threshold rises: reverse to integrate over increasing fpr
    fpr, pro = fpr[::-1], pro[::-1]
    keep = fpr <= max_fpr
    fpr_cut = np.concatenate([fpr[keep], [max_fpr]])
    pro_cut = np.concatenate([pro[keep], [np.interp(max_fpr, fpr, pro)]])
    return float(np.trapezoid(pro_cut, fpr_cut) / max_fpr)


def _tail_fraction(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=edges)
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]])
    return tail / max(1, values.size)


def _regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels, count


def border_band(size: int) -> int:
    """Width in pixels of the outer band where a model's own edge artefacts would show (2 cells of stride 8 at 224)."""
    return max(1, round(size / 14))


def maximum_on_border(maps: np.ndarray) -> tuple[float, float]:
    """(share of maps whose maximum lies in the outer band, share of the area that band covers).

    A detector that scores its own borders or padding puts the maximum there far more often than the
    band's area share; on normal images the two should be close (docs/BENCHMARKS.md).
    """
    maps = np.asarray(maps)
    height, width = maps.shape[-2:]
    band = border_band(min(height, width))
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    rows, cols = np.divmod(flat, width)
    on_band = (rows < band) | (rows >= height - band) | (cols < band) | (cols >= width - band)
    area = 1.0 - (height - 2 * band) * (width - 2 * band) / (height * width)
    return float(on_band.mean()), float(area)


def per_type_auroc(scores: np.ndarray, labels: np.ndarray, defect_types: list[str]) -> dict[str, float]:
    """Image AUROC of each defect type against all good images."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    kinds = np.asarray(defect_types)
    result = {}
    for kind in sorted(set(defect_types) - {"good"}):
        chosen = (labels == 0) | (kinds == kind)
        result[kind] = image_auroc(scores[chosen], labels[chosen])
    return result
