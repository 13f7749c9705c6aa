"""Evaluate an exported sensor model on labelled recordings through onnxruntime: F1, false and missed alarm rates."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.sensormodel import SensorModel
from training.errors import DatasetError
from training.sensors.data import CsvColumns, SensorSeries, read_sensor_data

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
    unscored_rows: int  # rows with a missing reading: no window holds them, so no verdict
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
    """Scores of every window (stride 1) of a T x C recording, through the exported graph; windows are copied out
    a chunk at a time, so a long recording never holds all of its (overlapping) windows at once."""
    length = model.spec.window_length
    if len(values) < length:
        return np.empty(0, dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)  # N x C x T, no copy
    chunks = (np.ascontiguousarray(view[i : i + SCORE_CHUNK], np.float32) for i in range(0, len(view), SCORE_CHUNK))
    return np.concatenate([model.score(chunk).score for chunk in chunks])


def point_verdicts(scores: np.ndarray, n_samples: int, length: int, threshold: float) -> np.ndarray:
    """A sample is anomalous when every window (stride 1) that contains it scores above the threshold.

    This is the rule of SKAB's published Conv-AE notebook: one noisy window cannot flag 60 samples, and a
    sample is flagged only once the whole stretch of context around it looks abnormal.
    """
    lowest = np.full(n_samples, np.inf)
    for start, score in enumerate(scores):
        np.minimum(lowest[start : start + length], score, out=lowest[start : start + length])
    return np.isfinite(lowest) & (lowest > threshold)


@dataclass(frozen=True)
class RecordingResult:
    """One labelled recording judged: point and window counts, and the window scores with their labels."""

    point: Counts
    window: Counts
    scores: np.ndarray  # every window (stride 1) of every stretch
    window_labels: np.ndarray  # 1 where the window holds an anomalous sample
    unscored_rows: int


def evaluate_recording(model: SensorModel, series: SensorSeries, threshold: float) -> RecordingResult:
    """Windows are cut within each stretch (no missing reading, no time gap), as the consumer cuts them; rows with a
    missing reading get no verdict and are left out of the point counts."""
    if series.labels is None:
        raise DatasetError(series.name, "no label column ('anomaly', 'label' or 'is_anomaly'): evaluation needs one")
    length, stride = model.spec.window_length, model.spec.window_stride
    verdicts = np.zeros(len(series.values), dtype=bool)
    scored = np.zeros(len(series.values), dtype=bool)
    window, scores, window_labels = Counts(), [], []
    for stretch in series.stretches:
        values, labels = series.values[stretch], series.labels[stretch]
        stretch_scores = window_scores(model, values)
        scored[stretch] = True
        verdicts[stretch] = point_verdicts(stretch_scores, len(values), length, threshold)
        if len(stretch_scores):
            # window label: any anomalous sample inside; windows at the line's stride, as the runtime cuts them
            holds = np.lib.stride_tricks.sliding_window_view(labels, length).max(axis=1)
            window += Counts.of(stretch_scores[::stride] > threshold, holds[::stride])
            scores.append(stretch_scores)
            window_labels.append(holds)
    return RecordingResult(
        point=Counts.of(verdicts[scored], series.labels[scored]),
        window=window,
        scores=np.concatenate(scores) if scores else np.empty(0, dtype=np.float32),
        window_labels=np.concatenate(window_labels) if window_labels else np.empty(0, dtype=np.int8),
        unscored_rows=int((~scored).sum()),
    )


def evaluate_sensors(model_path: Path, data: Path, columns: CsvColumns = CsvColumns()) -> SensorEvaluation:
    """Score every labelled recording under `data` with the ONNX model at its stored window threshold.

    The model's channels are taken from the files by name (other columns are ignored, as on the line)."""
    model = SensorModel(model_path, prefer_gpu=False)
    picked = CsvColumns(columns.time_column, columns.label_column, model.spec.channels, columns.gap_periods)
    recordings = read_sensor_data(data, picked)
    threshold = model.metadata.image_threshold
    results = [evaluate_recording(model, series, threshold) for series in recordings]
    point, window = sum((r.point for r in results), Counts()), sum((r.window for r in results), Counts())
    scores = np.concatenate([r.scores for r in results])
    labels = np.concatenate([r.window_labels for r in results])
    both = 0 < labels.sum() < len(labels)
    return SensorEvaluation(
        point=point,
        window=window,
        window_auroc=float(roc_auc_score(labels, scores)) if both else None,
        threshold=threshold,
        window_length=model.spec.window_length,
        recordings=len(recordings),
        unscored_rows=sum(r.unscored_rows for r in results),
        model_name=model.metadata.model_name,
        model_version=model.metadata.model_version,
    )
