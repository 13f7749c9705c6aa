"""Selection study for the feature-space models: fixed epochs on cached backbone features, the validation defects
that choose (training.data.synthetic_defects.validation_set), the older paste-only check, and the real test set
(reported only; nothing is chosen on it). Prints one JSON line per model and keeps its maps for offline checks.

    .venv/bin/python bench/feature_study.py DATA_DIR feature-cae,reverse-distillation [--epochs 40] [--contrast]
        [--no-location-scale] [--maps DIR]

Unlike bench_training.py it runs no time budget, so a busy machine changes its duration, not its figures.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch

from pipeline.preprocess import InputSpec
from training.data.images import detect_channels, list_images, load_images, load_test_set, split_validation
from training.data.images import train_folder as find_train_folder
from training.data.synthetic_defects import corrupt_batch, validation_set
from training.evaluation.detection_metrics import aupro, image_auroc, maximum_on_border, per_type_auroc, pixel_auroc
from training.fitting import FitPlan, fit_loop
from training.models import create_model
from training.models.feature_space.fit import FeatureStep, extract_features
from training.models.feature_space.model import FeatureSpaceAutoencoder
from training.models.scoring import ScoringGraph, predict

SCORE_POOL = 19  # TrainConfig.score_pool at 224 px


def auroc_against(clean: np.ndarray, defective: np.ndarray) -> float:
    return image_auroc(np.r_[clean, defective], np.r_[np.zeros(len(clean)), np.ones(len(defective))])


class StudyStep(FeatureStep):
    """Training's feature step without validation: a fixed number of epochs, no best epoch, no early stopping."""

    validates = False


def fit(model: FeatureSpaceAutoencoder, features: list[torch.Tensor], epochs: int, location_scale: bool) -> None:
    model.fit_statistics(features)
    params, _ = model.trainable_groups()
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-5)
    step = StudyStep(model, features, [], batch_size=16, generator=torch.Generator().manual_seed(0))
    # no deadline: the cosine schedule follows the epochs alone, once per epoch
    fit_loop(step, optimizer, FitPlan("study", epochs, deadline=math.inf, learning_rate=1e-3, schedule="epoch"))
    if location_scale:
        model.fit_scoring(features)
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("models", help="comma-separated registered feature-space models")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--contrast", action="store_true", help="contrast normalisation on")
    parser.add_argument("--no-location-scale", action="store_true")
    parser.add_argument("--overrides", default="{}", help="JSON of model config fields, e.g. '{\"outer_kernel\": 3}'")
    parser.add_argument("--maps", type=Path, default=None, help="folder for the maps (.npz) of each model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    files = list_images(find_train_folder(args.data))
    spec = InputSpec(224, detect_channels(files), "stretch")
    images = load_images(files, spec)
    train_idx, val_idx = split_validation(len(images), 0.1, 0)
    test = load_test_set(args.data, spec)
    pasted, pasted_masks = corrupt_batch(images[val_idx], images[train_idx], np.random.default_rng(5), probability=1.0)
    hard, hard_masks, hard_kinds = validation_set(images[val_idx], images[train_idx], 11)
    kinds = np.asarray(hard_kinds)
    features = None
    for name in args.models.split(","):
        started = time.time()
        torch.manual_seed(0)
        model = cast(
            FeatureSpaceAutoencoder,
            create_model(name, spec.channels, contrast_normalize=args.contrast, **json.loads(args.overrides)),
        )
        if features is None:  # the same backbone and contrast for every model: extracted once
            features = extract_features(model, images[train_idx], torch.device("cpu"))
        fit(model, features, args.epochs, not args.no_location_scale)
        seconds = time.time() - started
        graph = ScoringGraph(model, SCORE_POOL).eval()
        _, clean = predict(graph, images[val_idx])
        pasted_maps, pasted_scores = predict(graph, pasted)
        hard_maps, hard_scores = predict(graph, hard)
        maps, scores = predict(graph, test.images)
        by_kind = {k: round(auroc_against(clean, hard_scores[kinds == k]), 3) for k in dict.fromkeys(hard_kinds)}
        good = test.labels == 0
        row = {
            "set": args.data.name,
            "model": name,
            "epochs": args.epochs,
            "contrast": args.contrast,
            "location_scale": not args.no_location_scale,
            "pasted_image": round(auroc_against(clean, pasted_scores), 3),
            "pasted_pixel": round(pixel_auroc(pasted_maps[:, 0], pasted_masks[:, 0] > 0.5), 3),
            "validation_image": round(float(np.mean(list(by_kind.values()))), 3),
            "validation_pixel": round(pixel_auroc(hard_maps[:, 0], hard_masks[:, 0] > 0.5), 3),
            "validation_by_kind": by_kind,
            "test_image": round(image_auroc(scores, test.labels), 3),
            "test_pixel": round(pixel_auroc(maps[:, 0], test.masks), 3),
            "test_aupro": round(aupro(maps[:, 0], test.masks), 3),
            "max_on_border": round(maximum_on_border(maps[good, 0])[0], 2),
            "per_type": {k: round(v, 2) for k, v in per_type_auroc(scores, test.labels, test.defect_types).items()},
            "fit_seconds": round(seconds),
        }
        print(json.dumps(row), flush=True)
        if args.maps is not None:
            args.maps.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                args.maps / f"{args.data.name}-{name}.npz",
                scores=scores,
                maps=maps[:, 0].astype(np.float16),
                clean_scores=clean,
            )


if __name__ == "__main__":
    main()
