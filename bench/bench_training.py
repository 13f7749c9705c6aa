"""Detection quality on the real data sets in ../shared/data: train with default settings, evaluate
through onnxruntime, print a table and write JSON (results go into docs/BENCHMARKS.md).

    .venv/bin/python bench/bench_training.py [--sets mvtec_bottle_256 magnetic_tile] [--models feature-cae cae]

Each row also gives raw ONNX scoring speed (onnxruntime on the CPU, batch 32 and batch 1).
`patch-memory` is the reference row (bench/patch_memory.py), not a registered model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from patch_memory import patch_memory_row
from restoration import restoration_metrics
from rich.console import Console
from rich.table import Table

from pipeline.inference import OnnxModel, read_metadata
from training.config import TrainConfig
from training.evaluation.evaluate import evaluate
from training.evaluation.report import write_report
from training.train import train

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_SETS = ("mvtec_bottle_256", "magnetic_tile")
DEFAULT_MODELS = ("feature-cae", "reverse-distillation", "cae", "cae-plain", "patch-memory")
REFERENCE = "patch-memory"


def scoring_fps(model_path: Path, images: np.ndarray, batch: int, repeats: int = 3) -> float:
    """Frames per second of onnxruntime alone on preprocessed images (the line's raw scoring)."""
    model = OnnxModel(model_path)
    model.warm_up(batch)
    inputs = np.concatenate([images] * max(1, -(-64 // len(images))))[: max(64, batch)]
    started = time.perf_counter()
    for _ in range(repeats):
        for offset in range(0, len(inputs), batch):
            model.score(inputs[offset : offset + batch])
    return repeats * len(inputs) / (time.perf_counter() - started)


def run(data_root: Path, sets: list[str], models: list[str], out_dir: Path, max_minutes: float | None) -> list[dict]:
    rows = []
    for model in models:
        for name in sets:
            if model == REFERENCE:
                rows.append({"set": name, "model": model, **patch_memory_row(data_root / name)})
                continue
            overrides = {} if max_minutes is None else {"max_minutes": max_minutes}
            model_path = out_dir / f"{name}-{model}.onnx"
            started = time.monotonic()
            train(
                TrainConfig(
                    data_dir=data_root / name,
                    out=model_path,
                    model=model,
                    model_name=name,
                    show_progress=False,
                    **overrides,
                )
            )
            train_minutes = (time.monotonic() - started) / 60
            result, predictions = evaluate(model_path, data_root / name)
            write_report(result, predictions, out_dir / f"{name}-{model}")
            summary = read_metadata(model_path).training_config["summary"]
            rows.append(
                {
                    "set": name,
                    "model": model,
                    **result.to_dict(),
                    "train_minutes": round(train_minutes, 2),
                    "epochs": summary["epochs"],
                    "stopped_by": summary["stopped_by"],
                    "fps_batch32": round(scoring_fps(model_path, predictions.test_set.images, 32), 1),
                    "fps_batch1": round(scoring_fps(model_path, predictions.test_set.images[:16], 1), 1),
                    **restoration_metrics(OnnxModel(model_path), predictions.test_set),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--max-minutes", type=float, default=None, help="override the default time budget")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_training"))
    parser.add_argument("--results", type=Path, default=Path("bench/results/training.json"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run(args.data_root, args.sets, args.models, args.out, args.max_minutes)

    table = Table(title="detection quality (test sets, thresholds from normal validation images)")
    columns = [
        "set",
        "model",
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "f1",
        "precision",
        "recall",
        "observed_false_alarm_rate",
        "max_on_border",
        "per_type_auroc",
        "train_minutes",
        "epochs",
        "fps_batch32",
        "fps_batch1",
        "psnr_noisy_input",
        "psnr_restored",
        "defect_removal",
    ]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
    Console().print(table)
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    result_path = args.results
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {result_path}")


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):  # per-type AUROC
        return ", ".join(f"{k} {v:.2f}" for k, v in value.items())
    return "" if value is None else str(value)


if __name__ == "__main__":
    main()
