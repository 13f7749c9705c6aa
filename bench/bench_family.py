"""The autoencoder family on the real data sets, next to the default: every member trained with the same budget
through `training.train` (registry, calibration, ONNX export), scored through onnxruntime as the line runs it.

    .venv/bin/python bench/bench_family.py [--max-minutes 2] [--sets mvtec_bottle_256 magnetic_tile]

Rows: image and pixel AUROC, F1 at the calibrated threshold, AUROC per defect kind (test subfolder), training
minutes, epochs, the validation-loss curve, ONNX frames/s (batch 32). `cvae` is trained with the set's normals as
one camera (train/good/line-cam/) and scored with that camera's index and with the unknown fallback (index 0).
The denoising study trains `cae-plain` with each named corruption. Figures go to docs/img/models/.
JSON is rewritten after every run, so a cut-short run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_training import scoring_fps
from family_figures import reconstruction_figure, sample_figure

from pipeline.inference import OnnxModel, read_metadata
from training.config import TrainConfig
from training.data.images import LabelledSet, load_test_set
from training.evaluation.detection_metrics import image_auroc, pixel_auroc, threshold_metrics
from training.export.decoder import decoder_path
from training.train import train

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_SETS = ("mvtec_bottle_256", "magnetic_tile")
CAMERA = "line-cam"


@dataclass(frozen=True)
class Run:
    """One bench row: a registered model with training-config overrides."""

    name: str
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    study: str = "family"


FAMILY = (
    Run("cae-plain", "cae-plain"),  # synthetic-defect denoising, the training default corruption
    Run("cae", "cae"),
    Run("vae", "vae"),
    Run("vae-elbo", "vae", {"score": "elbo"}),
    Run("cvae", "cvae"),
    Run("stacked-ae", "stacked-ae"),
    Run("stacked-ae-end-to-end", "stacked-ae", {"pretrain_fraction": 0.0}),
)
DENOISING = tuple(
    Run(f"cae-plain/{kind}", "cae-plain", {"corruption": kind}, study="denoising")
    for kind in ("none", "gaussian", "salt-pepper", "mask")
)
# The KL/reconstruction balance: the known failure point of variational models (docs/models/vae.md).
KL_STUDY = tuple(Run(f"vae/kl-{weight}", "vae", {"kl_weight": weight}, study="kl") for weight in (0.01, 0.1))
DEFAULT = (Run("reverse-distillation (default)", "reverse-distillation", study="default"),)


def camera_layout(source: Path, root: Path) -> Path:
    """The set with its normals as one camera's subfolder (symlinks), for the conditional model."""
    data = root / source.name
    (data / "train" / "good").mkdir(parents=True, exist_ok=True)
    camera = data / "train" / "good" / CAMERA
    if not camera.exists():
        camera.symlink_to((source / "train" / "good").resolve())
        for part in ("test", "ground_truth"):
            if (source / part).exists():
                (data / part).symlink_to((source / part).resolve())
    return data


def quality(scores: np.ndarray, maps: np.ndarray, test: LabelledSet, threshold: float) -> dict[str, Any]:
    """Image/pixel AUROC, F1 at the calibrated threshold and image AUROC of each defect kind against the good ones."""
    kinds = np.array(test.defect_types)
    good = kinds == "good"
    per_kind = {
        kind: round(image_auroc(scores[good | (kinds == kind)], test.labels[good | (kinds == kind)]), 4)
        for kind in sorted(set(test.defect_types) - {"good"})
    }
    has_masks = test.masks is not None and bool(test.masks.any())
    return {
        "image_auroc": round(image_auroc(scores, test.labels), 4),
        "pixel_auroc": round(pixel_auroc(maps[:, 0], test.masks), 4) if has_masks else None,
        "f1": round(threshold_metrics(scores, test.labels, threshold)["f1"], 4),
        "per_kind": per_kind,
    }


def run_one(run: Run, data_dir: Path, out_dir: Path, max_minutes: float, figures: Path) -> dict[str, Any]:
    model_path = out_dir / f"{data_dir.name}-{run.name.replace('/', '-').split(' ')[0]}.onnx"
    started = time.monotonic()
    train(
        TrainConfig(
            data_dir=data_dir, out=model_path, model=run.model, model_name=data_dir.name, max_minutes=max_minutes,
            show_progress=False, **run.overrides,
        )
    )  # fmt: skip
    minutes = (time.monotonic() - started) / 60
    model = OnnxModel(model_path)
    test = load_test_set(data_dir, model.metadata.input_spec)
    conditions = None
    if model.metadata.condition is not None:  # the known camera's index; the fallback is measured below
        conditions = np.full(len(test.images), model.metadata.condition.values.index(CAMERA) + 1, dtype=np.int64)
    scored = model.score_in_chunks(test.images, conditions=conditions)
    summary = read_metadata(model_path).training_config["summary"]
    row = {
        "set": data_dir.name, "model": run.name, "study": run.study, "architecture": run.model, **run.overrides,
        **quality(scored.score, scored.anomaly_map, test, model.metadata.image_threshold),
        "train_minutes": round(minutes, 2), "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
        "val_losses": summary.get("val_losses", []),
        "fps_batch32": round(scoring_fps(model_path, test.images, 32), 1),
    }  # fmt: skip
    if conditions is not None:
        fallback = model.score_in_chunks(test.images)  # no condition: every frame on the unknown path
        row["unknown_condition"] = quality(fallback.score, fallback.anomaly_map, test, model.metadata.image_threshold)
    if run.study != "denoising":
        stem = f"{run.name.replace('/', '-').split(' ')[0]}-{data_dir.name}"
        reconstruction_figure(model, test, conditions, figures / f"{stem}.png")
        if decoder_path(model_path).is_file():
            sample_figure(decoder_path(model_path), figures / f"{stem}-samples.png")
    return row


def write(rows: list[dict[str, Any]], path: Path, max_minutes: float) -> None:
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "max_minutes": max_minutes,
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS))
    parser.add_argument("--max-minutes", type=float, default=2.0, help="training budget of every run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_family"))
    parser.add_argument("--figures", type=Path, default=Path("docs/img/models"))
    parser.add_argument("--results", type=Path, default=Path("bench/results/family.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    cameras = Path(tempfile.mkdtemp(prefix="family-cameras-"))
    rows: list[dict[str, Any]] = []
    for run in (*FAMILY, *DENOISING, *KL_STUDY, *DEFAULT):
        if args.only is not None and run.name not in args.only:
            continue
        for name in args.sets:
            data_dir = args.data_root / name
            if run.model == "cvae":
                data_dir = camera_layout(data_dir, cameras)
            row = run_one(run, data_dir, args.out, args.max_minutes, args.figures)
            rows.append(row)
            write(rows, args.results, args.max_minutes)
            print(json.dumps({k: v for k, v in row.items() if k != "val_losses"}), flush=True)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
