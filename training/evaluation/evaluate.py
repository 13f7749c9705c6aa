"""Evaluate an exported model on an MVTec-layout test set through onnxruntime, as the line runs it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.inference import OnnxModel
from training.data.images import LabelledSet, load_test_set
from training.evaluation.detection_metrics import (
    aupro,
    image_auroc,
    maximum_on_border,
    per_type_auroc,
    pixel_auroc,
    threshold_metrics,
)


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one model on one test set; pixel metrics are None where the set has no masks."""

    image_auroc: float
    pixel_auroc: float | None
    aupro: float | None
    f1: float
    precision: float
    recall: float
    threshold: float
    n_good: int
    n_defect: int
    model_name: str
    model_version: str
    # the budget the threshold was set for (None: F1-optimal or older model) and what the good test images showed
    false_alarm_rate: float | None = None
    observed_false_alarm_rate: float | None = None
    # where good images' map maxima land: share in the outer band against the band's share of the area
    max_on_border: float | None = None
    border_area: float | None = None
    per_type_auroc: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Predictions:
    """What the model said about each test image, kept for plots."""

    test_set: LabelledSet
    scores: np.ndarray
    maps: np.ndarray


def predict_test_set(model_path: Path, data_dir: Path) -> tuple[OnnxModel, Predictions]:
    model = OnnxModel(model_path)
    test_set = load_test_set(data_dir, model.metadata.input_spec)
    outputs = model.score_in_chunks(test_set.images)
    return model, Predictions(test_set, outputs.score, outputs.anomaly_map[:, 0])


def evaluate(model_path: Path, data_dir: Path) -> tuple[EvaluationResult, Predictions]:
    """Score every test image with the ONNX model and compute the metrics at its stored threshold."""
    model, predictions = predict_test_set(model_path, data_dir)
    test_set = predictions.test_set
    labels = test_set.labels
    n_defect = int(labels.sum())
    if n_defect == 0 or n_defect == len(labels):
        raise ValueError(f"{data_dir}/test needs both good and defective images to compute AUROC")
    has_masks = test_set.masks is not None and bool(test_set.masks.any())
    threshold = model.metadata.image_threshold
    at_threshold = threshold_metrics(predictions.scores, labels, threshold)
    on_border, border_area = maximum_on_border(predictions.maps[labels == 0])
    result = EvaluationResult(
        image_auroc=image_auroc(predictions.scores, labels),
        pixel_auroc=pixel_auroc(predictions.maps, test_set.masks) if has_masks else None,
        aupro=aupro(predictions.maps, test_set.masks) if has_masks else None,
        threshold=threshold,
        n_good=len(labels) - n_defect,
        n_defect=n_defect,
        model_name=model.metadata.model_name,
        model_version=model.metadata.model_version,
        false_alarm_rate=model.metadata.false_alarm.rate if model.metadata.false_alarm is not None else None,
        observed_false_alarm_rate=float(np.mean(predictions.scores[labels == 0] > threshold)),
        max_on_border=on_border,
        border_area=border_area,
        per_type_auroc=per_type_auroc(predictions.scores, labels, test_set.defect_types),
        **at_threshold,
    )
    return result, predictions
