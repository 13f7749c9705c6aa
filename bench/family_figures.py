"""Figures of the autoencoder family for docs/models/: reconstructions of test images, and samples of the
variational models drawn from the prior through their decoder-only ONNX file (`<model>.decoder.onnx`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # servers and CI have no display
import matplotlib.pyplot as plt
import numpy as np

from pipeline.inference import OnnxModel
from pipeline.latent.runtime import Decoder
from training.data.images import LabelledSet, load_test_set
from training.export.decoder import decoder_path


def _show(axis: plt.Axes, image: np.ndarray, title: str = "", cmap: str = "gray") -> None:
    shown = np.clip(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), 0, 1)
    axis.imshow(shown, cmap=cmap, vmin=0, vmax=1)  # absolute grey levels: a washed-out reconstruction must show
    axis.set_title(title, fontsize=7)
    axis.axis("off")


def reconstruction_figure(model: OnnxModel, test: LabelledSet, conditions: np.ndarray | None, out: Path) -> None:
    """One good and one image of each defect kind: input, the model's reconstruction, the anomaly map."""
    kinds = list(dict.fromkeys(test.defect_types))
    picks = [test.defect_types.index(kind) for kind in (["good"] + [k for k in kinds if k != "good"])[:5]]
    images = test.images[picks]
    chosen = conditions[picks] if conditions is not None else None
    restored = model.restore(images, chosen)
    maps = model.score(images, chosen).anomaly_map
    figure, axes = plt.subplots(3, len(picks), figsize=(1.6 * len(picks), 5))
    for column, index in enumerate(picks):
        _show(axes[0, column], images[column], test.defect_types[index])
        _show(axes[1, column], restored[column], "reconstruction")
        # one scale for the row: the maps of good and defective images compare
        _show(axes[2, column], maps[column] / max(float(maps.max()), 1e-9), "anomaly map", cmap="inferno")
    figure.suptitle(f"{model.metadata.architecture} on {model.metadata.model_name}", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def sample_figure(decoder: Path, out: Path, count: int = 8, seed: int = 0) -> None:
    """Decoded samples of N(0, I); for a conditional decoder one row per condition index (0 = unknown)."""
    sampler = Decoder(decoder, prefer_gpu=False)  # what `lineguard generate` runs
    spec = sampler.spec
    latent = np.random.default_rng(seed).standard_normal((count, spec.latent_size)).astype(np.float32)
    rows: list[str | None] = [None, *spec.condition_values] if spec.condition else [None]
    labels = ["unknown (0)", *spec.condition_values] if spec.condition else [spec.architecture]
    figure, axes = plt.subplots(len(rows), count, figsize=(1.2 * count, 1.4 * len(rows)), squeeze=False)
    for row, (condition, label) in enumerate(zip(rows, labels, strict=True)):
        for column, image in enumerate(sampler.decode(latent, condition)):
            chw = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
            _show(axes[row, column], chw / 255.0, label if column == 0 else "")
    props = {"architecture": spec.architecture, "model_name": spec.model_name}
    figure.suptitle(f"samples of {props['architecture']} ({props['model_name']}), z ~ N(0, I)", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main() -> None:
    """Figures for every model a `bench_family.py` run left in its output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("runs/bench_family"))
    data_root = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data-root", type=Path, default=data_root)
    parser.add_argument("--figures", type=Path, default=Path("docs/img/models"))
    parser.add_argument("--pattern", default="*.onnx", help="which trained models, e.g. 'mvtec_bottle_256-*.onnx'")
    args = parser.parse_args()
    for path in sorted(args.models.glob(args.pattern)):
        if path.name.endswith((".decoder.onnx", ".encoder.onnx")):
            continue
        model = OnnxModel(path)
        data_set = model.metadata.model_name
        run = path.stem.removeprefix(f"{data_set}-")
        test = load_test_set(args.data_root / data_set, model.metadata.input_spec)
        conditions = None
        if model.metadata.condition is not None:  # the one camera the bench trains a cvae on
            conditions = np.full(len(test.images), 1, dtype=np.int64)
        reconstruction_figure(model, test, conditions, args.figures / f"{run}-{data_set}.png")
        if (decoder := decoder_path(path)).is_file():
            sample_figure(decoder, args.figures / f"{run}-{data_set}-samples.png")
        print(f"figures of {path.name}", flush=True)


if __name__ == "__main__":
    main()
