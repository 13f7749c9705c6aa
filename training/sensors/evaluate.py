"""Evaluate an exported sensor model on labelled recordings through onnxruntime: F1, false and missed alarm rates."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.sensormodel import SensorModel
from training.errors import DatasetError
from training.sensors.data import SensorSeries, read_sensor_data, sliding_windows

SCORE_CHUNK = 1024


@dataclass(frozen=True)
class Counts:
    """A confusion matrix; F1, FAR (false alarms / normal) and MAR (missed / anomalous) as SKAB defines them."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @classmethod
    def of(cls, predicted: np.ndarray, labels: np.ndarray) -> Counts:
        predicted, labels = predicted.astype(bool), labels.astype(bool)
        return cls(
            int((predicted & labels).sum()),
            int((predicted & ~labels).sum()),
            int((~predicted & ~labels).sum()),
            int((~predicted & labels).sum()),
        )

    @property
    def f1(self) -> float:
        return self.tp / max(1e-12, self.tp + (self.fn + self.fp) / 2)

    @property
    def far(self) -> float:
        return self.fp / max(1, self.fp + self.tn)

    @property
    def mar(self) -> float:
        return self.fn / max(1, self.fn + self.tp)


@dataclass(frozen=True)
class SensorEvaluation:
    """Per-point metrics (SKAB's outlier-detection protocol) and per-window metrics at the stored threshold."""

    point: Counts
    window: Counts
    window_auroc: float | None
    threshold: float
    window_length: int
    recordings: int
    model_name: str
    model_version: str

    def to_dict(self) -> dict[str, object]:
        flat: dict[str, object] = {}
        for level, counts in (("point", self.point), ("window", self.window)):
            flat |= {f"{level}_f1": counts.f1, f"{level}_far": counts.far, f"{level}_mar": counts.mar}
            flat |= {f"{level}_{key}": value for key, value in asdict(counts).items()}
        rest = asdict(self)
        del rest["point"], rest["window"]
        return flat | rest


def window_scores(model: SensorModel, values: np.ndarray) -> np.ndarray:
    """Scores of every window (stride 1) of a T x C recording, through the exported graph."""
    windows = sliding_windows(values, model.spec.window_length, 1)
    parts = [model.score(windows[i : i + SCORE_CHUNK]).score for i in range(0, len(windows), SCORE_CHUNK)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def point_verdicts(scores: np.ndarray, n_samples: int, length: int, threshold: float) -> np.ndarray:
    """A sample is anomalous when every window (stride 1) that contains it scores above the threshold.

    This is the rule of SKAB's published Conv-AE notebook: one noisy window cannot flag 60 samples, and a
    sample is flagged only once the whole stretch of context around it looks abnormal.
    """
    lowest = np.full(n_samples, np.inf)
    for start, score in enumerate(scores):
        np.minimum(lowest[start : start + length], score, out=lowest[start : start + length])
    return np.isfinite(lowest) & (lowest > threshold)


def evaluate_recording(model: SensorModel, series: SensorSeries, threshold: float) -> tuple[Counts, Counts, np.ndarray]:
    """Point and window counts of one labelled recording, plus its window scores and labels for AUROC."""
    if series.labels is None:
        raise DatasetError(series.name, "no 'anomaly' column: evaluation needs labelled recordings")
    length, stride = model.spec.window_length, model.spec.window_stride
    scores = window_scores(model, series.values)
    point = Counts.of(point_verdicts(scores, len(series.values), length, threshold), series.labels)
    # window label: any anomalous sample inside; windows at the line's stride, as the runtime cuts them
    labels = sliding_windows(series.labels[:, None], length, 1)[:, 0].max(axis=1) if len(scores) else np.empty(0)
    window = Counts.of(scores[::stride] > threshold, labels[::stride])
    return point, window, np.stack([scores, labels]) if len(scores) else np.empty((2, 0))


def evaluate_sensors(model_path: Path, data: Path) -> SensorEvaluation:
    """Score every labelled recording under `data` with the ONNX model at its stored window threshold."""
    model = SensorModel(model_path, prefer_gpu=False)
    recordings = read_sensor_data(data)
    if recordings[0].channels != model.spec.channels:
        raise DatasetError(
            str(data), f"sensor columns {recordings[0].channels} differ from the model's {model.spec.channels}"
        )
    threshold = model.metadata.image_threshold
    point, window, scored = Counts(), Counts(), []
    for series in recordings:
        one_point, one_window, one_scored = evaluate_recording(model, series, threshold)
        point, window = point + one_point, window + one_window
        scored.append(one_scored)
    scores, labels = np.concatenate(scored, axis=1)
    both = 0 < labels.sum() < len(labels)
    return SensorEvaluation(
        point=point,
        window=window,
        window_auroc=float(roc_auc_score(labels, scores)) if both else None,
        threshold=threshold,
        window_length=model.spec.window_length,
        recordings=len(recordings),
        model_name=model.metadata.model_name,
        model_version=model.metadata.model_version,
    )
