"""Fit the feature-space model, choosing among a few candidate settings on synthetic defects pasted
into the held-out normal images (never on labelled defects), then fit its image restorer.

The candidates differ in what one setting cannot get right for every line: per-frame contrast
normalisation helps dark, low-contrast parts whose exposure drifts and costs a little on well-lit
colour parts, so a run tries both and keeps the one that finds the synthetic defects best.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import torch

from training.data.synthetic_defects import validation_set
from training.evaluation.detection_metrics import image_auroc, pixel_auroc
from training.fitting import FitSummary, PhaseClock, copy_state
from training.models.family import Fitted, ImageData, ImageRun
from training.models.feature_space.fit import FEATURE_SHARE, extract_features, fit_feature_model, fit_restorer
from training.models.feature_space.model import FeatureSpaceAutoencoder
from training.models.scoring import ScoringGraph

log = logging.getLogger(__name__)

CONTRAST_CHOICES: dict[str, tuple[bool, ...]] = {"auto": (False, True), "on": (True,), "off": (False,)}
# Share of the epochs each candidate trains before the choice; the chosen one trains the rest.
PROBE_SHARE = 0.25


@dataclass(frozen=True)
class SyntheticCheck:
    """How well a model finds the validation defects (training.data.synthetic_defects.validation_set)."""

    image_auroc_by_kind: dict[str, float]
    pixel_auroc: float

    @property
    def image_auroc(self) -> float:
        """Mean over defect kinds: no single kind that a model spots trivially can carry the choice."""
        return float(np.mean(list(self.image_auroc_by_kind.values())))

    @property
    def quality(self) -> float:
        return (self.image_auroc + self.pixel_auroc) / 2

    def record(self) -> dict[str, object]:
        return {
            "synthetic_image_auroc": round(self.image_auroc, 4),
            "synthetic_pixel_auroc": round(self.pixel_auroc, 4),
            "synthetic_image_auroc_by_kind": {k: round(v, 4) for k, v in self.image_auroc_by_kind.items()},
        }


@dataclass(frozen=True)
class ValidationDefects:
    """The held-out normals and their copies with validation defects (training.data.synthetic_defects.validation_set),
    made once per run; their backbone features are extracted once per contrast setting and scored by every candidate
    and every way it can score."""

    corrupted: np.ndarray
    masks: np.ndarray  # N x 1 x H x W
    kinds: list[str]

    @classmethod
    def make(cls, val_images: np.ndarray, donors: np.ndarray, seed: int) -> ValidationDefects:
        return cls(*validation_set(val_images, donors, seed))


@torch.no_grad()
def synthetic_validation(
    model: FeatureSpaceAutoencoder,
    clean_features: list[torch.Tensor],
    defect_features: list[torch.Tensor],
    defects: ValidationDefects,
    score_pool: int,
    batch: int = 32,
) -> dict[str, SyntheticCheck]:
    """Held-out normals against copies of them with one validation defect of each kind, scored from their cached
    backbone features through the model's map under each of its scoring options (one pass over the features) and the
    exported graph's image score."""
    graph = ScoringGraph(model.eval(), score_pool)
    size = defects.masks.shape[-1]

    def score(features: list[torch.Tensor]) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
        maps: dict[str, list[np.ndarray]] = defaultdict(list)
        scores: dict[str, list[np.ndarray]] = defaultdict(list)
        for start in range(0, len(features[0]), batch):
            chunk = [f[start : start + batch] for f in features]
            for option, anomaly_map in model.maps_by_scoring(chunk, size).items():
                # every other pixel of each row and column is kept for the pixel AUROC: the maps are smoothed over
                # several pixels, so it is the same to the third decimal, and ranking a quarter of the pixels took it
                # from half the check's time to an eighth
                maps[option].append(anomaly_map[:, 0, ::2, ::2].cpu().numpy())
                scores[option].append(graph.image_score(anomaly_map).cpu().numpy())
        return maps, scores

    _, clean_scores = score(clean_features)
    defect_maps, defect_scores = score(defect_features)
    masks = defects.masks[:, 0, ::2, ::2] > 0.5
    kind_of = np.asarray(defects.kinds)
    checks = {}
    for option, option_scores in defect_scores.items():
        normal, defective = np.concatenate(clean_scores[option]), np.concatenate(option_scores)
        by_kind = {}
        for kind in dict.fromkeys(defects.kinds):
            chosen = defective[kind_of == kind]
            by_kind[kind] = image_auroc(np.r_[normal, chosen], np.r_[np.zeros(len(normal)), np.ones(len(chosen))])
        checks[option] = SyntheticCheck(by_kind, pixel_auroc(np.concatenate(defect_maps[option]), masks))
    return checks


def fit_best_feature_model(run: ImageRun, data: ImageData, device: torch.device) -> Fitted:
    """Choose a candidate on validation defects, finish training it, train its restorer; returns the chosen model on
    the CPU with its architecture, its fit and the selection record.

    Candidates are the run's model (every feature-space model for `--model auto`) with contrast normalisation on
    and off. With several, each trains for a quarter of the epochs, the best on the validation defects
    (training.data.synthetic_defects.validation_set) continues for the rest: the chosen model gets the epochs asked for.
    """
    channels, train_images, val_images = data.channels, data.train_images, data.val_images
    started = time.monotonic()
    deadline = started + run.max_minutes * 60 * FEATURE_SHARE
    candidates = [(name, contrast) for name in run.candidates for contrast in CONTRAST_CHOICES[run.contrast]]
    probe_epochs = run.epochs if len(candidates) == 1 else max(1, round(run.epochs * PROBE_SHARE))
    planned = probe_epochs * len(candidates) + (run.epochs - probe_epochs)
    report: list[dict[str, object]] = []
    # by contrast (the backbone's input differs): training, held-out and validation-defect features
    features: dict[bool, tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = {}
    defects = ValidationDefects.make(val_images, train_images, run.seed + 5)
    best: Candidate | None = None
    phases = PhaseClock()
    for name, contrast in candidates:
        torch.manual_seed(run.seed)
        model = cast(FeatureSpaceAutoencoder, run.create_model(name, channels, contrast_normalize=contrast))
        model.to(device)
        setting = f"contrast {'on' if contrast else 'off'}"
        if contrast not in features:
            features[contrast] = (
                extract_features(model, train_images, device),
                extract_features(model, val_images, device),
                extract_features(model, defects.corrupted, device),
            )
            phases.lap(f"backbone features, {setting}")
        train_features, val_features, defect_features = features[contrast]
        summary = fit_feature_model(
            model, train_features, val_features, run, probe_epochs, phase_deadline(deadline, probe_epochs, planned)
        )
        phases.lap(f"fit {name}, {setting}")
        planned -= probe_epochs
        checks = synthetic_validation(model, val_features, defect_features, defects, run.score_pool)
        for scoring, check in checks.items():
            report.append(
                {
                    "model": name,
                    "contrast_normalize": contrast,
                    "scoring": scoring,
                    "epochs": summary.epochs,
                    **check.record(),
                }
            )
            log.info(
                "%s, contrast normalisation %s, %s, after %d epochs: validation defects image AUROC %.3f (%s), "
                "pixel %.3f",
                name,
                contrast,
                scoring,
                summary.epochs,
                check.image_auroc,
                ", ".join(f"{k} {v:.2f}" for k, v in check.image_auroc_by_kind.items()),
                check.pixel_auroc,
            )
            if best is None or check.quality > best.check.quality:
                best = Candidate(name, contrast, scoring, model, summary, check)
        phases.lap(f"validation defects {name}, {setting}")
    assert best is not None
    for row in report:
        setting = (row["model"], row["contrast_normalize"], row["scoring"])
        row["chosen"] = setting == (best.name, best.contrast, best.scoring)
    model, summary = best.model, best.summary
    if len(candidates) > 1 and run.epochs > probe_epochs and summary.stopped_by == "epochs":
        model.to(device)
        train_features, val_features, _ = features[best.contrast]
        rest = fit_feature_model(model, train_features, val_features, run, run.epochs - probe_epochs, deadline)
        summary = replace(rest, epochs=summary.epochs + rest.epochs, best_epoch=summary.epochs + rest.best_epoch)
        phases.lap(f"fit {best.name}, the rest of the epochs")
    features.clear()
    model.use_scoring(best.scoring)
    model.discard_unused_scoring()
    for row in report:
        if row["chosen"]:
            row["model_fields"] = model.shape_fields()
    fit_restorer(model.to(device), train_images, run, device, started + run.max_minutes * 60)
    phases.lap("image restorer")
    model = model.cpu().eval()
    torch.save(copy_state(model), run.checkpoint)
    log.info("time by phase: %s", ", ".join(f"{k} {v:.0f} s" for k, v in phases.seconds.items()))
    minutes = (time.monotonic() - started) / 60
    return Fitted(best.name, model, replace(summary, minutes=minutes, phase_seconds=phases.seconds), report)


@dataclass
class Candidate:
    """A candidate after its first epochs and how it did on the validation defects."""

    name: str
    contrast: bool
    scoring: str
    model: FeatureSpaceAutoencoder
    summary: FitSummary
    check: SyntheticCheck


def phase_deadline(deadline: float, epochs: int, planned_epochs: int) -> float:
    """The share of the time left that a phase of `epochs` gets out of the `planned_epochs` still to train."""
    now = time.monotonic()
    return now + max(deadline - now, 0.0) * epochs / max(planned_epochs, 1)
