"""Where a trained feature-cae's pixel AUROC goes on a labelled set (2026-12-07, issue 22): which defect types hold the
defect pixels, which normal pixels outscore them, and how the map's two terms (reconstruction, memory of normal codes)
rank the test set and the validation defects as the memory term's weight changes. A measurement on the test labels: it
explains a figure and sets nothing.

    .venv/bin/python bench/map_terms.py runs/bench_training/magnetic_tile-feature-cae.onnx ../shared/data/magnetic_tile

The model must have its checkpoint beside it (`train` keeps one) and a memory in its map.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from pipeline.preprocess import InputSpec
from training.data.images import list_images, load_images, load_test_set, split_validation
from training.evaluation.detection_metrics import aupro
from training.export.encoder_checkpoint import config_of, rebuild_model
from training.models.feature_cae.model import MEMORY_WEIGHTS, RECONSTRUCTION, FeatureCAE, memory_scoring
from training.models.feature_space.fit import extract_features
from training.models.feature_space.selection import ValidationDefects, synthetic_validation
from training.models.scoring import ScoringGraph

WEIGHTS = (0.0, *MEMORY_WEIGHTS)  # the memory term's weight against the reconstruction term (0: reconstruction alone)


@torch.no_grad()
def terms(model: FeatureCAE, images: np.ndarray, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The map's two terms on the model's grid, each as the line scales it (N x 1 x h x w)."""
    parts = [
        model.scoring_terms(model.extract(torch.from_numpy(images[i : i + batch])))
        for i in range(0, len(images), batch)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def full_size(model: FeatureCAE, grid: torch.Tensor, size: int) -> np.ndarray:
    """The map as the graph makes it from a grid distance: upsampled and blurred (N x size x size)."""
    return model.smooth_to(grid, size)[:, 0].numpy()


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return round(float(roc_auc_score(labels, np.r_[positive, negative])), 3)


def pixel_rows(maps: np.ndarray, masks: np.ndarray, types: np.ndarray) -> dict[str, object]:
    """Per defect type: its share of the defect pixels and its pixel AUROC against the good images; then every defect
    pixel against the normal pixels of the good images and of each type's defective images."""
    step = 2  # every other pixel: the same AUROC to the third decimal, a quarter of the memory
    maps, masks = maps[:, ::step, ::step], masks[:, ::step, ::step]
    positive, good = maps[masks], maps[types == "good"].ravel()
    kinds = sorted(set(types) - {"good"})
    return {
        "pixel_auroc": round(float(roc_auc_score(masks.ravel(), maps.ravel())), 3),
        "aupro": round(aupro(maps, masks), 3),
        "defect_pixel_share": {k: round(float(masks[types == k].sum() / masks.sum()), 2) for k in kinds},
        "pixel_auroc_against_good_images": {k: auroc(maps[types == k][masks[types == k]], good) for k in kinds},
        "all_defect_pixels_against_normals_of": {
            "good images": auroc(positive, good),
            **{k: auroc(positive, maps[types == k][~masks[types == k]]) for k in kinds},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a trained feature-cae (.onnx, checkpoint beside it)")
    parser.add_argument("data", type=Path, help="an MVTec-layout set with ground_truth masks")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, metadata = rebuild_model(args.model)
    if not isinstance(model, FeatureCAE) or not len(model.memory):
        raise SystemExit(f"{args.model} is not a feature-cae with a memory of normal codes in its map")
    model.eval()
    cfg = config_of(metadata)
    spec = InputSpec(model.config.image_size, model.config.channels, cfg.resize_mode)  # type: ignore[arg-type]
    test = load_test_set(args.data, spec)
    assert test.masks is not None, "the set has no ground_truth masks"
    types, labels = np.asarray(test.defect_types), test.labels
    reconstruction, memory = terms(model, test.images)

    images = load_images(list_images(args.data / "train" / "good"), spec)
    fitted, held_out = split_validation(len(images), cfg.val_fraction, cfg.seed)
    defects = ValidationDefects.make(images[held_out], images[fitted], cfg.seed + 5)
    clean_features = extract_features(model, images[held_out], torch.device("cpu"))
    defect_features = extract_features(model, defects.corrupted, torch.device("cpu"))
    checks = synthetic_validation(model, clean_features, defect_features, defects, cfg.score_pool)

    rows = []
    for weight in WEIGHTS:
        maps = full_size(model, reconstruction + weight * memory, spec.size)
        scores = model_scores(maps, cfg.score_pool)
        check = checks[memory_scoring(weight) if weight else RECONSTRUCTION]
        rows.append(
            {
                "memory_weight": weight,
                "test_image_auroc": round(float(roc_auc_score(labels, scores)), 3),
                **pixel_rows(maps, test.masks, types),
                "validation_image_auroc": round(check.image_auroc, 4),
                "validation_pixel_auroc": round(check.pixel_auroc, 4),
                "validation_quality": round(check.quality, 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    maps = full_size(model, memory, spec.size)
    alone = round(float(roc_auc_score(labels, model_scores(maps, cfg.score_pool))), 3)
    print(json.dumps({"memory_term_alone": True, "test_image_auroc": alone, **pixel_rows(maps, test.masks, types)}))


def model_scores(maps: np.ndarray, score_pool: int) -> np.ndarray:
    """The graph's image score of full-size maps (ScoringGraph.image_score)."""
    with torch.no_grad():
        return ScoringGraph(torch.nn.Identity(), score_pool).image_score(torch.from_numpy(maps)[:, None]).numpy()


if __name__ == "__main__":
    main()
