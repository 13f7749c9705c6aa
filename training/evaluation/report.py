"""Evaluation report: ROC curve, score histograms and a grid of heatmap overlays as PNG, plus JSON."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # servers and CI have no display
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from training.evaluation.evaluate import EvaluationResult, Predictions


def write_report(result: EvaluationResult, predictions: Predictions, out_dir: Path) -> list[Path]:
    """Write metrics.json, roc.png, scores.png and overlays.png into `out_dir`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "metrics.json", out_dir / "roc.png", out_dir / "scores.png", out_dir / "overlays.png"]
    paths[0].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    _plot_roc(result, predictions, paths[1])
    _plot_histograms(result, predictions, paths[2])
    _plot_overlays(predictions, result.threshold, paths[3])
    return paths


def _plot_roc(result: EvaluationResult, predictions: Predictions, path: Path) -> None:
    fpr, tpr, _ = roc_curve(predictions.test_set.labels, predictions.scores)
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot(fpr, tpr, label=f"image AUROC {result.image_auroc:.3f}")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{result.model_name} ROC")
    axis.legend(loc="lower right")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _plot_histograms(result: EvaluationResult, predictions: Predictions, path: Path) -> None:
    labels = predictions.test_set.labels
    figure, axis = plt.subplots(figsize=(6, 4))
    bins = np.linspace(predictions.scores.min(), predictions.scores.max(), 40)
    axis.hist(predictions.scores[labels == 0], bins=bins, alpha=0.6, label=f"good ({result.n_good})")
    axis.hist(predictions.scores[labels == 1], bins=bins, alpha=0.6, label=f"defect ({result.n_defect})")
    axis.axvline(result.threshold, color="red", linestyle="--", label="threshold")
    axis.set(xlabel="image score", ylabel="images", title="score distributions")
    axis.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _plot_overlays(predictions: Predictions, threshold: float, path: Path, per_kind: int = 3) -> None:
    test_set = predictions.test_set
    chosen = [
        i
        for kind in dict.fromkeys(test_set.defect_types)
        for i in [j for j, t in enumerate(test_set.defect_types) if t == kind][:per_kind]
    ]
    columns = 4
    rows = (len(chosen) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    vmax = float(np.quantile(predictions.maps, 0.999))
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), chosen, strict=False):
        image = test_set.images[index].transpose(1, 2, 0).squeeze()
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        axis.imshow(predictions.maps[index], cmap="jet", alpha=0.4, vmin=0, vmax=vmax)
        verdict = "DEFECT" if predictions.scores[index] > threshold else "ok"
        axis.set_title(f"{test_set.defect_types[index]}: {predictions.scores[index]:.3f} {verdict}", fontsize=8)
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)
