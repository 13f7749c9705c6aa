"""Do an autoencoder's embeddings separate defect types? magnetic_tile: train on normal images only, embed the
labelled defect test images with the encoder ONNX (onnxruntime, as `lineguard cluster` does), and report 5-fold
cross-validated accuracy of a logistic regression beside the majority-class baseline; k-means on the same
embeddings gives the silhouette and the agreement with the true types (adjusted Rand index).

    .venv/bin/python bench/bench_embeddings.py [--models vae reverse-distillation] [--max-minutes 3]
        [--figure-model reverse-distillation] [--workdir DIR: trained models are reused from there]

Two views of each defect: the whole image, and the crop around its ground-truth box that `lineguard cluster`
would cut around a detected region (pipeline.latent.crops.crop_box). Writes bench/results/embeddings-*.json and
docs/img/clusters_magnetic_tile.png (2-D projection) plus a contact sheet of one k-means cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.latent.clustering import cluster_embeddings
from pipeline.latent.crops import crop_box
from pipeline.latent.runtime import Encoder
from pipeline.latent.sheets import contact_sheet, write_png
from pipeline.preprocess import read_image
from training.config import TrainConfig
from training.train import train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "magnetic_tile"


def labelled_defects(data: Path) -> tuple[list[Path], list[str]]:
    """Every defective test image and its type (the test subfolder); good images are not a defect type."""
    files, labels = [], []
    for folder in sorted(p for p in (data / "test").iterdir() if p.is_dir() and p.name != "good"):
        for path in sorted(folder.glob("*.png")):
            files.append(path)
            labels.append(folder.name)
    return files, labels


def defect_crop(path: Path, data: Path) -> np.ndarray:
    """The image cut around the bounding box of its ground-truth mask, as the line cuts around a region."""
    image = read_image(path)
    mask = cv2.imread(str(data / "ground_truth" / path.parent.name / f"{path.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
    if mask is None or not (mask > 127).any():
        return image
    x, y, w, h = cv2.boundingRect((mask > 127).astype(np.uint8))
    bx, by, bw, bh = crop_box({"x": x, "y": y, "w": w, "h": h}, image.shape[:2], margin=2.0, min_side=32)
    return image[by : by + bh, bx : bx + bw]


def encoder_for(model: str, workdir: Path, max_minutes: float, size: int) -> Path:
    """Train (once; reused from `workdir`) on the normal training images and write the encoder alone."""
    encoder = workdir / f"{model}.encoder.onnx"
    if not encoder.is_file():
        backbone = "none" if model in ("cae", "cae-plain", "vae", "stacked-ae") else "efficientnet-lite0"
        size_arg = size if backbone == "none" else None
        cfg = TrainConfig(
            data_dir=DATA,
            out=workdir / f"{model}.onnx",
            model=model,
            backbone=backbone,
            size=size_arg,
            max_minutes=max_minutes,
            encoder_out=encoder,
            show_progress=False,
        )
        train(cfg)
    return encoder


def evaluate_view(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1))
    accuracy = cross_val_score(classifier, embeddings, labels, cv=folds, scoring="accuracy")
    majority = cross_val_score(DummyClassifier(strategy="most_frequent"), embeddings, labels, cv=folds)
    k = len(set(labels.tolist()))
    clustering = cluster_embeddings(embeddings, "kmeans", k=k, seed=seed)
    return {
        "cv_accuracy_mean": float(accuracy.mean()),
        "cv_accuracy_std": float(accuracy.std()),
        "majority_accuracy": float(majority.mean()),
        "kmeans_k": k,
        "kmeans_silhouette": float(clustering.silhouette or 0.0),
        "kmeans_adjusted_rand": float(adjusted_rand_score(labels, clustering.labels)),
    }


def write_figures(embeddings: np.ndarray, labels: np.ndarray, crops: list[np.ndarray], title: str) -> list[str]:
    """2-D PCA projection, coloured by true type and by k-means cluster; and the contact sheet of cluster 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(set(labels.tolist()))
    clustering = cluster_embeddings(embeddings, "kmeans", k=k)
    points = PCA(n_components=2, random_state=0).fit_transform(clustering.points)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for name in sorted(set(labels.tolist())):
        chosen = labels == name
        axes[0].scatter(points[chosen, 0], points[chosen, 1], s=9, label=name)
    axes[0].legend(fontsize=8, markerscale=2)
    axes[0].set_title("true defect type")
    axes[1].scatter(points[:, 0], points[:, 1], s=9, c=clustering.labels, cmap="tab10")
    axes[1].set_title(f"k-means, k={k} (silhouette {clustering.silhouette:.2f})")
    for axis in axes:
        axis.set_xlabel("PC 1")
        axis.set_ylabel("PC 2")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure_path = ROOT / "docs" / "img" / "clusters_magnetic_tile.png"
    figure.savefig(figure_path, dpi=110)
    plt.close(figure)
    largest = max(clustering.clusters, key=lambda c: int((clustering.labels == c).sum()))
    chosen = clustering.representatives(largest, 25)
    sheet = contact_sheet([crops[i] for i in chosen], [str(labels[i])[:6] for i in chosen], tile=96)
    sheet_path = write_png(ROOT / "docs" / "img" / "clusters_magnetic_tile_sheet.png", sheet)
    return [str(figure_path.relative_to(ROOT)), str(sheet_path.relative_to(ROOT))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vae"])
    parser.add_argument("--max-minutes", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=128, help="input size of from-scratch models")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lineguard-bench-embeddings"))
    parser.add_argument("--figure-model", default=None, help="model whose crop embeddings make the docs figures")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    files, names = labelled_defects(DATA)
    labels = np.array(names)
    views = {"whole image": [read_image(p) for p in files], "defect crop": [defect_crop(p, DATA) for p in files]}
    rows = []
    for model in args.models:
        encoder = Encoder(encoder_for(model, args.workdir, args.max_minutes, args.size), prefer_gpu=False)
        for view, images in views.items():
            embeddings = encoder.embed(images)
            row = {"model": model, "view": view, "embedding_size": int(embeddings.shape[1])}
            row |= evaluate_view(embeddings, labels)
            rows.append(row)
            print(json.dumps(row))
            if view == "defect crop" and model == args.figure_model:
                title = f"magnetic_tile defect crops, {model} encoder embeddings ({len(files)} images)"
                row["figures"] = write_figures(embeddings, labels, images, title)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), no GPU",
        "data": "magnetic_tile test defects: " + ", ".join(f"{n} {names.count(n)}" for n in sorted(set(names))),
        "protocol": "encoder trained on train/good only; 5-fold stratified CV (shuffled, seed 0) of "
        "StandardScaler + LogisticRegression(C=0.1); majority-class baseline on the same folds",
        "max_minutes": args.max_minutes,
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / f"embeddings-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
