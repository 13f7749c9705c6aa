"""Thresholds from normal scores: a false-alarm budget through a tail model, a quantile plus a margin, or
F1-optimal on labelled data."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist

import numpy as np
from scipy.stats import genpareto
from sklearn.metrics import precision_recall_curve

from pipeline.contract import FalseAlarmSpec, ModelMetadata, ScoreStats
from pipeline.inference import OnnxModel
from training.data.images import load_test_set
from training.data.synthetic_defects import corrupt_batch

log = logging.getLogger(__name__)


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


# A generalised Pareto tail is fitted to the top TAIL_SHARE of the normal scores, with at least MIN_TAIL of them;
# below MIN_FOR_TAIL scores no tail can be fitted and a Gaussian tail (mean + z * std) stands in.
TAIL_SHARE = 0.1
MIN_TAIL = 6
MIN_FOR_TAIL = 30
# A tail fit is trusted where it rests on at least this many exceedances (the warning names the count needed).
TRUSTED_TAIL = 20
# Shape parameter kept in a range where the fit is stable on a few dozen points (xi > 0.5: infinite variance).
SHAPE_RANGE = (-0.5, 0.5)
BOOTSTRAP_ROUNDS = 200
INTERVAL = (0.05, 0.95)


@dataclass(frozen=True)
class TailFit:
    """Peaks over threshold: P(score > x) = share * (1 + shape * (x - start) / scale) ** (-1 / shape) for x > start."""

    start: float
    share: float
    scale: float
    shape: float

    def exceedance(self, x: float) -> float:
        """The modelled probability that a normal score exceeds x (x above the tail's start)."""
        excess = max(x - self.start, 0.0) / self.scale
        if abs(self.shape) < 1e-6:
            return self.share * math.exp(-excess)
        base = 1.0 + self.shape * excess
        return 0.0 if base <= 0 else self.share * base ** (-1.0 / self.shape)

    def quantile_for(self, rate: float) -> float:
        """The score that normal frames exceed with probability `rate` (rate below the tail share)."""
        ratio = rate / self.share
        if abs(self.shape) < 1e-6:
            return self.start - self.scale * math.log(ratio)
        return self.start + self.scale / self.shape * (ratio ** (-self.shape) - 1.0)


def fit_tail(values: np.ndarray) -> TailFit:
    """A generalised Pareto fit (maximum likelihood, location 0) to the excesses over the tail's start; an exponential
    tail (shape 0, scale their mean) below TRUSTED_TAIL excesses."""
    ordered = np.sort(values)
    count = max(MIN_TAIL, math.ceil(TAIL_SHARE * len(ordered)))
    start = float(ordered[-count - 1])
    excess = ordered[-count:] - start
    spread = float(excess.mean())
    if spread <= 0:  # a flat tail (identical scores): nothing above the start was ever seen
        return TailFit(start, count / len(ordered), max(abs(start), 1.0) * 1e-6, 0.0)
    if count < TRUSTED_TAIL:
        # A shape estimated from a handful of excesses swings the extrapolated threshold: two trainings of one
        # magnetic-tile model (70 normals, 7 excesses, the same largest normal score 1.5) drew 2.35 and 3.55 and
        # caught 11 % and 0.5 % of the defects. The exponential tail gave 2.32 and 2.26 (12 % both, no false alarm
        # on 252 good test tiles).
        return TailFit(start, count / len(ordered), spread, 0.0)
    shape, _, scale = genpareto.fit(excess, floc=0.0)
    shape = float(np.clip(shape, *SHAPE_RANGE))
    if not math.isfinite(scale) or scale <= 0:
        shape, scale = 0.0, spread
    return TailFit(start, count / len(ordered), float(scale), shape)


@dataclass(frozen=True)
class BudgetThreshold:
    """A threshold set from a false-alarm budget, with what the tail model expects at it."""

    threshold: float
    false_alarm_rate: float
    expected_rate: float
    rate_interval: tuple[float, float]
    n_normals: int
    method: str
    warning: str | None

    @property
    def spec(self) -> FalseAlarmSpec:
        return FalseAlarmSpec(
            rate=self.false_alarm_rate,
            expected_rate=self.expected_rate,
            interval_low=self.rate_interval[0],
            interval_high=self.rate_interval[1],
            n_normals=self.n_normals,
            method=self.method,
            warning=self.warning,
        )


def budget_threshold(scores: np.ndarray, false_alarm_rate: float, seed: int = 0) -> BudgetThreshold:
    """The threshold that normal scores exceed with probability `false_alarm_rate` (per frame or window).

    Where the held-out normals are many enough to read that quantile directly (at least 20 above it),
    it is read; otherwise a generalised Pareto tail fitted to the top tenth of the scores (SPOT's peaks
    over threshold) extrapolates to it. The interval of the expected rate comes from refitting on
    bootstrap resamples. Too few normals for a trustworthy tail is a warning naming how many are needed.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("calibration needs a non-empty set of finite normal scores")
    if not 0.0 < false_alarm_rate < 1.0:
        raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
    n = values.size
    needed = max(MIN_FOR_TAIL, math.ceil(TRUSTED_TAIL / TAIL_SHARE))
    if false_alarm_rate * n >= TRUSTED_TAIL:
        method = "empirical"
        threshold = float(np.quantile(values, 1.0 - false_alarm_rate))
        rate_at = empirical_rate
    elif n >= MIN_FOR_TAIL:
        method = "gpd-tail"
        threshold = (
            fit_tail(values).quantile_for(false_alarm_rate)
            if false_alarm_rate < TAIL_SHARE
            else float(np.quantile(values, 1.0 - false_alarm_rate))
        )
        rate_at = tail_rate
    else:
        method = "gaussian"
        threshold = float(values.mean() + NormalDist().inv_cdf(1.0 - false_alarm_rate) * values.std())
        rate_at = gaussian_rate
    # never below what was seen on normals at that rate: a fit must not flag more than the data say it would
    threshold = max(threshold, float(np.quantile(values, 1.0 - false_alarm_rate)))
    rng = np.random.default_rng(seed)
    resampled = [rate_at(rng.choice(values, size=n, replace=True), threshold) for _ in range(BOOTSTRAP_ROUNDS)]
    low, high = (float(v) for v in np.quantile(resampled, INTERVAL))
    expected = float(rate_at(values, threshold))
    warning = None
    if method != "empirical" and n < needed:
        warning = (
            f"{n} held-out normal scores: a trustworthy tail for a false-alarm rate of {false_alarm_rate:g} needs "
            f"at least {needed} (expected rate {expected:.2g}, interval {low:.2g}-{high:.2g})"
        )
        log.warning("%s", warning)
    return BudgetThreshold(
        threshold=float(threshold),
        false_alarm_rate=float(false_alarm_rate),
        expected_rate=expected,
        rate_interval=(low, high),
        n_normals=int(n),
        method=method,
        warning=warning,
    )


def empirical_rate(values: np.ndarray, threshold: float) -> float:
    return float(np.mean(values > threshold))


def tail_rate(values: np.ndarray, threshold: float) -> float:
    return (
        min(1.0, fit_tail(values).exceedance(threshold))
        if threshold > np.quantile(values, 1 - TAIL_SHARE)
        else (empirical_rate(values, threshold))
    )


def gaussian_rate(values: np.ndarray, threshold: float) -> float:
    std = float(values.std())
    if std == 0:
        return 0.0 if threshold >= values.mean() else 1.0
    return 1.0 - NormalDist(float(values.mean()), std).cdf(threshold)


# Share of normal pixels allowed above the pixel threshold: the floor under the synthetic choice.
PIXEL_FALSE_POSITIVE_RATE = 1e-3
PIXEL_CANDIDATES = 48


def pixel_threshold(
    normal_maps: np.ndarray,
    defect_maps: np.ndarray,
    masks: np.ndarray,
    false_positive_rate: float = PIXEL_FALSE_POSITIVE_RATE,
) -> float:
    """The pixel threshold whose regions overlap pasted synthetic defects best, never below the per-pixel
    false-positive budget on normal maps.

    `normal_maps` are the held-out normals' maps, `defect_maps` the maps of copies of them with one synthetic
    defect each and `masks` where those defects are (N x 1 x H x W). Overlap is pixel F1 over the defect images.
    """
    normal = np.asarray(normal_maps, dtype=np.float64)
    if normal.size == 0 or not np.all(np.isfinite(normal)):
        raise ValueError("pixel calibration needs a non-empty set of finite normal maps")
    floor = float(np.quantile(normal[..., ::2, ::2], 1.0 - false_positive_rate))
    defect = np.asarray(defect_maps, dtype=np.float32)[..., ::2, ::2].ravel()
    truth = (np.asarray(masks)[..., ::2, ::2] > 0.5).ravel()
    above = defect[defect > floor]
    if not truth.any() or above.size == 0:
        return floor
    candidates = np.unique(np.r_[floor, np.quantile(above, np.linspace(0.0, 0.99, PIXEL_CANDIDATES))])
    positives = int(truth.sum())
    best, best_f1 = floor, -1.0
    for candidate in candidates:
        flagged = defect > candidate
        hits = int(np.count_nonzero(flagged & truth))
        f1 = 2 * hits / max(int(np.count_nonzero(flagged)) + positives, 1)
        if f1 > best_f1:
            best, best_f1 = float(candidate), f1
    return best


def calibrate_model(
    model: OnnxModel,
    metadata: ModelMetadata,
    val_images: np.ndarray,
    false_alarm_rate: float,
    seed: int,
    labelled_val_dir: Path | None = None,
    val_conditions: np.ndarray | None = None,
    donors: np.ndarray | None = None,
) -> ModelMetadata:
    """`metadata` with thresholds and normal-score statistics from `model`'s own scores on held-out normals.

    Image: the false-alarm budget (a tail model of the normal scores), or F1-optimal on a labelled validation
    set. Pixel: chosen on synthetic defects pasted into the same normals (`pixel_threshold`). Training calls it on
    the file it exported, `lineguard quantize` on the quantised file: what the line compares is what was calibrated.
    """
    val = model.score_in_chunks(val_images, conditions=val_conditions)
    budget = budget_threshold(val.score, false_alarm_rate, seed=seed)
    image_threshold, false_alarm = budget.threshold, budget.spec
    if labelled_val_dir is not None:
        labelled = load_test_set(labelled_val_dir, model.metadata.input_spec)
        image_threshold = f1_optimal_threshold(model.score_in_chunks(labelled.images).score, labelled.labels)
        false_alarm = None
    corrupted, masks = corrupt_batch(
        val_images, val_images if donors is None else donors, np.random.default_rng(seed + 7), probability=1.0
    )
    defect_maps = model.score_in_chunks(corrupted, conditions=val_conditions).anomaly_map
    return replace(
        metadata,
        image_threshold=image_threshold,
        pixel_threshold=pixel_threshold(val.anomaly_map, defect_maps, masks),
        image_score_stats=score_stats(val.score),
        pixel_score_stats=score_stats(val.anomaly_map[:, :, ::4, ::4]),
        false_alarm=false_alarm,
    )
