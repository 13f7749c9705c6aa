"""Evaluate an exported sensor model on labelled recordings through onnxruntime: F1, false and missed alarm rates."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.sensors.adapt import adapt_run
from pipeline.sensors.model import SensorModel
from training.errors import DatasetError
from training.sensors.data import CsvColumns, SensorSeries, read_sensor_data

SCORE_CHUNK = 1024
TOP_CHANNELS = 3


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
    point_auroc: float | None  # of the per-row scores (mean of the covering windows)
    threshold: float
    window_length: int
    recordings: int
    unscored_rows: int  # rows with a missing reading (no window holds them) or adapting a run: no verdict
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
    """Scores of every window (stride 1) of a T x C' recording (the graph's inputs: SensorModel.inputs), through
    the exported graph; windows are copied out a chunk at a time, so a long recording never holds all of its
    (overlapping) windows at once."""
    return window_outputs(model, values)[0]


def window_outputs(model: SensorModel, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N) and mean error per channel (N x C) of every window (stride 1) of a T x C' recording."""
    length = model.spec.window_length
    if len(values) < length:
        return np.empty(0, dtype=np.float32), np.empty((0, len(model.spec.channels)), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)  # N x C x T, no copy
    chunks = (np.ascontiguousarray(view[i : i + SCORE_CHUNK], np.float32) for i in range(0, len(view), SCORE_CHUNK))
    outputs = [model.score(chunk) for chunk in chunks]
    return np.concatenate([o.score for o in outputs]), np.concatenate([o.anomaly_map.mean(axis=2) for o in outputs])


def row_scores(scores: np.ndarray, n_samples: int, length: int) -> np.ndarray:
    """Each row's score: the mean of the scores of the windows (stride 1) that cover it; NaN where none does."""
    rows = np.full(n_samples, np.nan)
    if len(scores):
        kernel = np.ones(length)
        total = np.convolve(np.asarray(scores, dtype=np.float64), kernel)
        count = np.convolve(np.ones(len(scores)), kernel)
        rows[: len(total)] = total / count
    return rows


def row_verdicts(scores: np.ndarray, n_samples: int, length: int, threshold: float, rule: str) -> np.ndarray:
    """Each row's verdict from the windows (stride 1) that cover it: "row-mean", their mean score above the
    threshold; "all-windows", every one of them above it (`point_verdicts`, SKAB's notebook rule).

    The mean ranks a fault shorter than the window (12 rows in a 184-row window) first, where the notebook rule
    never flags it: the windows that reach past the fault score low. Against the window threshold, not a budget
    of held-out row scores: those are averages over many overlapping windows, so their tail sits near the typical
    window score and rests on a handful of independent values (on the public bench such a row threshold flagged
    12-99 % of the normal rows where the window threshold flagged 4-35 % of the windows).
    """
    if rule == "all-windows":
        return point_verdicts(scores, n_samples, length, threshold)
    return np.nan_to_num(row_scores(scores, n_samples, length), nan=-np.inf) > threshold


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
    """One labelled recording judged: point and window counts, window scores with their labels, and per row the
    score (mean of the covering windows) and verdict; top channels: the channels with the largest share of the
    error in the windows above the threshold."""

    name: str
    point: Counts
    window: Counts
    scores: np.ndarray  # every window (stride 1) of every stretch
    window_labels: np.ndarray  # 1 where the window holds an anomalous sample
    unscored_rows: int
    rows: np.ndarray  # T: mean score of the windows covering each row, NaN where none does
    verdicts: np.ndarray  # T bool
    top_channels: list[dict[str, object]]


def evaluate_recording(model: SensorModel, series: SensorSeries, threshold: float) -> RecordingResult:
    """Windows are cut within each stretch (no missing reading, no time gap), as the consumer cuts them; rows with a
    missing reading, and a model's adaptation rows at the start of each stretch, get no verdict and are left out of
    the point counts."""
    if series.labels is None:
        raise DatasetError(series.name, "no label column ('anomaly', 'label' or 'is_anomaly'): evaluation needs one")
    try:
        inputs = model.inputs(series.values, series.timestamps_ms)
    except ValueError as exc:
        raise DatasetError(series.name, str(exc)) from exc
    length, stride = model.spec.window_length, model.spec.window_stride
    verdicts = np.zeros(len(series.values), dtype=bool)
    scored = np.zeros(len(series.values), dtype=bool)
    rows = np.full(len(series.values), np.nan)
    alarmed_error = np.zeros(len(model.spec.channels))
    window, scores, window_labels = Counts(), [], []
    for whole in series.stretches:
        # a run is judged after its adaptation rows (pipeline.sensors.adapt); a shorter one is not judged at all
        adapted = adapt_run(inputs[whole], model.spec.adapt_rows, len(model.spec.channels))
        if adapted is None:
            continue
        stretch = slice(whole.start + model.spec.adapt_rows, whole.stop)
        values, labels = adapted[model.spec.adapt_rows :], series.labels[stretch]
        stretch_scores, errors = window_outputs(model, values)
        scored[stretch] = True
        rows[stretch] = row_scores(stretch_scores, len(values), length)
        verdicts[stretch] = row_verdicts(stretch_scores, len(values), length, threshold, model.spec.point_rule)
        alarmed_error += errors[stretch_scores > threshold].sum(axis=0)
        if len(stretch_scores):
            # window label: any anomalous sample inside; windows at the line's stride, as the runtime cuts them
            holds = np.lib.stride_tricks.sliding_window_view(labels, length).max(axis=1)
            window += Counts.of(stretch_scores[::stride] > threshold, holds[::stride])
            scores.append(stretch_scores)
            window_labels.append(holds)
    total = alarmed_error.sum()
    top = [
        {"channel": model.spec.channels[c], "share": round(float(alarmed_error[c] / total), 4)}
        for c in np.argsort(-alarmed_error, kind="stable")[:TOP_CHANNELS]
        if total > 0
    ]
    return RecordingResult(
        name=series.name,
        point=Counts.of(verdicts[scored], series.labels[scored]),
        window=window,
        scores=np.concatenate(scores) if scores else np.empty(0, dtype=np.float32),
        window_labels=np.concatenate(window_labels) if window_labels else np.empty(0, dtype=np.int8),
        unscored_rows=int((~scored).sum()),
        rows=rows,
        verdicts=verdicts,
        top_channels=top,
    )


def evaluate_sensors(model_path: Path, data: Path, columns: CsvColumns = CsvColumns()) -> SensorEvaluation:
    """Score every labelled recording under `data` with the ONNX model at its stored window threshold.

    The model's channels are taken from the files by name (other columns are ignored, as on the line)."""
    return judge_recordings(model_path, data, columns)[3]


def judge_recordings(
    model_path: Path, data: Path, columns: CsvColumns = CsvColumns()
) -> tuple[SensorModel, list[SensorSeries], list[RecordingResult], SensorEvaluation]:
    """The model, the recordings, each one's result and the pooled evaluation (what a report draws)."""
    model = SensorModel(model_path, prefer_gpu=False)
    picked = CsvColumns(columns.time_column, columns.label_column, model.spec.channels, columns.gap_periods)
    recordings = read_sensor_data(data, picked)
    threshold = model.metadata.image_threshold
    results = [evaluate_recording(model, series, threshold) for series in recordings]
    point, window = sum((r.point for r in results), Counts()), sum((r.window for r in results), Counts())
    scores = np.concatenate([r.scores for r in results])
    labels = np.concatenate([r.window_labels for r in results])
    both = 0 < labels.sum() < len(labels)
    row_values = np.concatenate([r.rows for r in results])
    row_labels = np.concatenate([s.labels for s in recordings])  # type: ignore[misc]
    known = np.isfinite(row_values)
    rows_both = 0 < row_labels[known].sum() < known.sum()
    evaluation = SensorEvaluation(
        point=point,
        window=window,
        window_auroc=float(roc_auc_score(labels, scores)) if both else None,
        point_auroc=float(roc_auc_score(row_labels[known], row_values[known])) if rows_both else None,
        threshold=threshold,
        window_length=model.spec.window_length,
        recordings=len(recordings),
        unscored_rows=sum(r.unscored_rows for r in results),
        model_name=model.metadata.model_name,
        model_version=model.metadata.model_version,
    )
    return model, recordings, results, evaluation
