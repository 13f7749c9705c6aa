"""FP32 vs FP16 vs the CPU: one model scored on every provider and precision at hand, side by side.

    python bench/gpu_parity.py --model runs/default.onnx               # CPU fp32, CUDA fp32 / fp16 (a GPU needed)
    python bench/gpu_parity.py --model runs/default.onnx --tensorrt    # + TensorRT fp32 / fp16 (engines built first)
    python bench/gpu_parity.py --model runs/default.onnx --cpu-only    # what a machine without a GPU can check
    python bench/gpu_parity.py --train-minutes 1 ...                   # no model: train the default one first

The reference is the fp32 file on the CPU provider (plain run). Each other variant reports the largest score and
map differences from it, the score correlation, how many frames its verdict flips at the model's threshold, and
frames/s per batch size (one pass over the frames after a warm-up batch). The fp16 file is made by
training.export.half.to_float16; "fp16, all half" converts without keeping the score head in float32, to show on a
GPU what keeping it buys. Prints a table and writes gpu-parity-<UTC time>.json to --out ($OUT when set).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_models import default_model  # noqa: E402

from pipeline.dev.simulator import synthetic_frames  # noqa: E402
from pipeline.inference import OnnxModel  # noqa: E402
from pipeline.preprocess import preprocess_batch  # noqa: E402
from pipeline.providers import CPU, CUDA, TENSORRT, TensorRT  # noqa: E402
from training.export.half import to_float16  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    file: str  # "fp32", "fp16" or "fp16-all-half"
    gpu: bool
    tensorrt: bool = False
    bind_io: bool | None = None  # None: the runtime's default (bound on a GPU, plain on the CPU)

    @property
    def expected_provider(self) -> str:
        return TENSORRT if self.tensorrt else CUDA if self.gpu else CPU


def variants(cpu_only: bool, tensorrt: bool) -> list[Variant]:
    found = [
        Variant("CPU fp32", "fp32", gpu=False),
        Variant("CPU fp32, IO binding", "fp32", gpu=False, bind_io=True),
        Variant("CPU fp16", "fp16", gpu=False),
    ]
    if not cpu_only:
        found += [
            Variant("CUDA fp32, plain run", "fp32", gpu=True, bind_io=False),
            Variant("CUDA fp32", "fp32", gpu=True),
            Variant("CUDA fp16", "fp16", gpu=True),
            Variant("CUDA fp16, all half", "fp16-all-half", gpu=True),
        ]
    if tensorrt and not cpu_only:
        found += [Variant("TensorRT fp32", "fp32", gpu=True, tensorrt=True)]
        found += [Variant("TensorRT fp16", "fp16", gpu=True, tensorrt=True)]
    return found


def model_files(model: Path, work: Path) -> dict[str, Path]:
    proto = onnx.load(str(model))
    files = {"fp32": model, "fp16": work / "model.fp16.onnx", "fp16-all-half": work / "model.fp16-all-half.onnx"}
    onnx.save(to_float16(proto), str(files["fp16"]))
    onnx.save(to_float16(proto, score_head_fp32=False), str(files["fp16-all-half"]))
    for name in ("fp16", "fp16-all-half"):  # the same thresholds as the fp32 file, override included
        override = model.with_name(model.name + ".thresholds.json")
        if override.is_file():
            files[name].with_name(files[name].name + ".thresholds.json").write_text(override.read_text())
    return files


def frames_for(model: OnnxModel, count: int) -> np.ndarray:
    """The simulator's frames (a tenth with defects), preprocessed for the model as the line does."""
    images = [f.image for f in itertools.islice(synthetic_frames(11, 256, 0.1), count)]
    return preprocess_batch(images, model.metadata.input_spec)


def run_variant(
    variant: Variant, files: dict[str, Path], inputs: np.ndarray, batch_sizes: list[int], cache: Path
) -> dict[str, Any]:
    tensorrt = TensorRT(cache_dir=cache, max_batch=max(batch_sizes)) if variant.tensorrt else None
    started = time.perf_counter()
    model = OnnxModel(files[variant.file], prefer_gpu=variant.gpu, tensorrt=tensorrt, bind_io=variant.bind_io)
    model.warm_up(max(batch_sizes))  # TensorRT builds its engine here
    result: dict[str, Any] = {
        "provider": model.provider,
        "io_binding": model._bound is not None,
        "load_and_warm_up_s": time.perf_counter() - started,
    }
    if model.provider != variant.expected_provider:
        result["error"] = f"ran on {model.provider}, not {variant.expected_provider} (the log line above says why)"
        return result
    scores = model.score_in_chunks(inputs, max(batch_sizes))
    result["scores"], result["maps"] = scores.score, scores.anomaly_map
    result["threshold"] = model.metadata.image_threshold
    result["fps"] = {}
    for size in batch_sizes:
        model.warm_up(size)
        start = time.perf_counter()
        for offset in range(0, len(inputs), size):
            model.score(inputs[offset : offset + size])
        result["fps"][size] = len(inputs) / (time.perf_counter() - start)
    return result


def compare(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    if "scores" not in result:
        return {}
    scores, want = result["scores"], reference["scores"]
    threshold = reference["threshold"]
    return {
        "score_max_abs_diff": float(np.max(np.abs(scores - want))),
        "score_max_rel_diff": float(np.max(np.abs(scores - want) / np.maximum(np.abs(want), 1e-12))),
        "map_max_abs_diff": float(np.max(np.abs(result["maps"] - reference["maps"]))),
        "score_correlation": float(np.corrcoef(scores, want)[0, 1]) if np.std(scores) > 0 else float("nan"),
        "verdicts_flipped": int(np.sum((scores > threshold) != (want > threshold))),
        "finite": bool(np.isfinite(scores).all() and np.isfinite(result["maps"]).all()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a LineGuard fp32 .onnx (default: train the default model)")
    parser.add_argument("--train-minutes", type=float, default=1.0, help="budget for training the default model")
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated")
    parser.add_argument("--cpu-only", action="store_true", help="the CPU rows only (no GPU needed)")
    parser.add_argument("--tensorrt", action="store_true", help="add TensorRT rows (engines built at warm-up)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "bench" / "results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("pipeline.inference").setLevel(logging.INFO)  # each variant's provider line
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="lg-gpu-parity-"))
    model = args.model or default_model(work, args.train_minutes)
    files = model_files(model, work)
    reference_model = OnnxModel(model, prefer_gpu=False)
    inputs = frames_for(reference_model, args.frames)
    print(f"onnxruntime {ort.__version__} ({ort.get_device()}), providers {ort.get_available_providers()}")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "onnxruntime": ort.__version__,
        "model": f"{reference_model.metadata.architecture} {reference_model.metadata.input_size} px ({model})",
        "frames": len(inputs),
        "variants": {},
    }
    runs = {}
    for variant in variants(args.cpu_only, args.tensorrt):
        runs[variant.name] = run_variant(variant, files, inputs, batch_sizes, work / "trt-cache")
    reference = runs["CPU fp32"]
    failed = False
    for name, run in runs.items():
        row = {k: v for k, v in run.items() if k not in ("scores", "maps", "threshold")} | compare(run, reference)
        results["variants"][name] = row
        failed |= "error" in row or not row.get("finite", False)
    print_table(results, batch_sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-parity-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {path}")
    return 1 if failed else 0


def print_table(results: dict[str, Any], batch_sizes: list[int]) -> None:
    print(f"\nParity and speed, {results['machine']}, {results['frames']} frames, model {results['model']}")
    header = f"  {'variant':<24} {'provider':<26} {'score diff':>10} {'map diff':>9} {'corr':>9} {'flips':>5}"
    print(header + "".join(f" {f'b{b} f/s':>9}" for b in batch_sizes))
    for name, row in results["variants"].items():
        if "error" in row:
            print(f"  {name:<24} {row['provider']:<26} {row['error']}")
            continue
        fps = "".join(f" {row['fps'][b]:>9,.0f}" for b in batch_sizes)
        print(
            f"  {name:<24} {row['provider']:<26} {row['score_max_abs_diff']:>10.2e} {row['map_max_abs_diff']:>9.2e} "
            f"{row['score_correlation']:>9.6f} {row['verdicts_flipped']:>5}{fps}"
        )


if __name__ == "__main__":
    sys.exit(main())
