"""INT8 against FP32 for the default model on the real data sets: raw scoring speed (onnxruntime alone, both files in
one process, rounds interleaved), image and pixel AUROC on the test set, score correlation; JSON for docs/BENCHMARKS.md.

    .venv/bin/python bench/bench_quantize.py [--sets mvtec_bottle_256 magnetic_tile] [--model A.onnx B.onnx]

Without --model each set's default model (feature-cae) is trained first (8-10 minutes a set on 2 cores). Run it on a
quiet machine with OMP_NUM_THREADS unset: onnxruntime uses every core, and the speed figures are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from pipeline.inference import OnnxModel
from training.config import TrainConfig
from training.data.images import load_test_set
from training.export.quantize import QuantizeConfig, quantize, scoring_speed
from training.train import train

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_SETS = ("mvtec_bottle_256", "magnetic_tile")


def fp32_model(data_dir: Path, given: Path | None, out_dir: Path) -> tuple[Path, float | None]:
    """The set's fp32 default model: the one given, or one trained now (with its training minutes)."""
    if given is not None:
        return given, None
    started = time.monotonic()
    path = train(
        TrainConfig(
            data_dir=data_dir,
            out=out_dir / f"{data_dir.name}-feature-cae.onnx",
            model_name=data_dir.name,
            show_progress=False,
        )
    )
    return path, (time.monotonic() - started) / 60


def row(data_dir: Path, model: Path, cfg: QuantizeConfig, batches: list[int], rounds: int) -> dict[str, object]:
    started = time.monotonic()
    parity = quantize(replace(cfg, model=model, calibration_dir=data_dir, validation_dir=data_dir, speed_rounds=0))
    quantize_seconds = time.monotonic() - started
    fp32, int8 = OnnxModel(model, prefer_gpu=False), OnnxModel(parity.out, prefer_gpu=False)
    images = load_test_set(data_dir, fp32.metadata.input_spec).images
    speed = {}
    for batch in batches:
        before, after = scoring_speed([fp32, int8], images, batch, rounds)
        speed[f"batch{batch}"] = {"fp32_fps": round(before, 1), "int8_fps": round(after, 1), "speedup": after / before}
    assert parity.image_auroc is not None and parity.pixel_auroc is not None
    return {
        "set": data_dir.name,
        "fp32_model": str(model),
        "int8_model": str(parity.out),
        "quantize_seconds": round(quantize_seconds, 1),
        "speed": speed,
        "image_auroc": {"fp32": parity.image_auroc[0], "int8": parity.image_auroc[1]},
        "image_auroc_drop": parity.image_auroc[0] - parity.image_auroc[1],
        "pixel_auroc": {"fp32": parity.pixel_auroc[0], "int8": parity.pixel_auroc[1]},
        "normal_score_correlation": parity.normal_correlation,
        "validation_score_correlation": parity.validation_correlation,
        "n_held_out_normals": parity.n_normals,
        "image_threshold": {"fp32": parity.image_threshold[0], "int8": parity.image_threshold[1]},
        "settings": parity.settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS))
    parser.add_argument(
        "--model", nargs="+", type=Path, default=None, help="trained fp32 models, one per set, in order"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_quantize"), help="trained and quantised files")
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 1], help="batch sizes of the speed figures")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds (the best of each counts)")
    parser.add_argument("--calibration-images", type=int, default=QuantizeConfig.calibration_images)
    parser.add_argument("--float-convs", type=int, default=QuantizeConfig.float_convs)
    parser.add_argument("--per-tensor", action="store_true")
    parser.add_argument("--results", type=Path, default=None, help="default: bench/results/quantize-<UTC>.json")
    args = parser.parse_args()
    if args.model is not None and len(args.model) != len(args.sets):
        parser.error("--model takes one file per set, in the order of --sets")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, name in enumerate(args.sets):
        data_dir = args.data_root / name
        model, train_minutes = fp32_model(data_dir, None if args.model is None else args.model[index], args.out)
        cfg = QuantizeConfig(
            model=model,
            calibration_dir=data_dir,
            out=args.out / f"{model.stem}.int8.onnx",
            calibration_images=args.calibration_images,
            float_convs=args.float_convs,
            per_channel=not args.per_tensor,
        )
        rows.append({**row(data_dir, model, cfg, args.batches, args.rounds), "train_minutes": train_minutes})

    table = Table(title="INT8 against FP32, default model (raw scoring on this machine's CPU)")
    for column in ("set", "batch", "fp32 fps", "int8 fps", "speedup", "image AUROC", "pixel AUROC", "corr (normals)"):
        table.add_column(column)
    for r in rows:
        for batch, figures in r["speed"].items():  # type: ignore[union-attr]
            table.add_row(
                str(r["set"]),
                batch,
                f"{figures['fp32_fps']:.1f}",
                f"{figures['int8_fps']:.1f}",
                f"x{figures['speedup']:.2f}",
                "{fp32:.4f} -> {int8:.4f}".format(**r["image_auroc"]),  # type: ignore[arg-type]
                "{fp32:.4f} -> {int8:.4f}".format(**r["pixel_auroc"]),  # type: ignore[arg-type]
                f"{r['normal_score_correlation']:.3f}",
            )
    Console().print(table)
    stamp = datetime.now(UTC)
    record = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "onnxruntime": ort.__version__,
        "rows": rows,
        "target": "int8 >= 1.8x fp32 frames/s, image AUROC drop <= 0.005 on both sets",
        "target_met": all(
            r["speed"]["batch32"]["speedup"] >= 1.8 and r["image_auroc_drop"] <= 0.005  # type: ignore[index]
            for r in rows
            if "batch32" in r["speed"]  # type: ignore[operator]
        ),
    }
    path = args.results or Path(f"bench/results/quantize-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
