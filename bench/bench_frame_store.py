"""The frame store's cost on the hot path: the batch transaction with the defects' images put in the store vs held
as blobs in the row (how rows were written before it), side by side, batch after batch alternating, on SQLite.

    python bench/bench_frame_store.py                       # 200 batches of 32 per case, defect rates 5 % and 50 %
    python bench/bench_frame_store.py --store memory://x    # any fsspec URL instead of a local folder

Images are what the judge makes for a 256x256 frame: the JPEG payload, the heatmap overlay PNG and the restored PNG.
Prints a table and writes bench/results/frame-store-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.alerting.rules import AlertRuleConfig, AlertRules  # noqa: E402
from pipeline.dev.simulator import synthetic_frames  # noqa: E402
from pipeline.frames.store import FrameStore  # noqa: E402
from pipeline.metrics import ConsumerMetrics  # noqa: E402
from pipeline.results import FrameResult, Source  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.storage.engine import open_database  # noqa: E402
from pipeline.verdict import image_png, overlay_png  # noqa: E402
from pipeline.writer import Batch, BatchTransaction  # noqa: E402

T0 = datetime(2026, 11, 29, tzinfo=UTC)
MODEL = SimpleNamespace(
    metadata=SimpleNamespace(
        model_name="bench",
        model_version="1",
        architecture="conv4",
        image_threshold=0.1,
        pixel_threshold=0.5,
        false_alarm=None,  # no budget: the drift reference is off, as for models calibrated before budgets
    ),
    path=Path("bench.onnx"),
    provider="CPUExecutionProvider",
)


def images(count: int) -> list[tuple[bytes, bytes, bytes]]:
    """(JPEG frame, overlay PNG, restored PNG) of simulator frames, as the judge makes them."""
    out = []
    rng = np.random.default_rng(0)
    for frame in itertools.islice((f.image for f in synthetic_frames(0, 256, 0.5)), count):
        _, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        model_input = frame[None].astype(np.float32) / 255.0
        heat = rng.random((256, 256)).astype(np.float32) * 0.3
        restored = cv2.GaussianBlur(frame, (7, 7), 0)[None].astype(np.float32) / 255.0
        out.append((jpeg.tobytes(), overlay_png(model_input, heat, 0.5), image_png(restored)))
    return out


def batch(first: int, size: int, rate: float, pictures: list[tuple[bytes, bytes, bytes]], rng: Any) -> Batch:
    results = []
    for offset in range(first, first + size):
        frame, overlay, restored = pictures[offset % len(pictures)]
        defect = bool(rng.random() < rate)
        at = T0 + timedelta(milliseconds=offset)
        result = FrameResult(Source("frames", 0, offset), "cam-1", "line-1", offset, at, at, 0.5, 0.1, defect)
        if defect:
            extra = {
                "frame": frame,
                "frame_content_type": "image/jpeg",
                "overlay_png": overlay,
                "restored_png": restored,
            }
            result = replace(result, regions=[{"x": 1, "y": 2, "w": 30, "h": 40, "area": 1200, "peak": 0.9}], **extra)
        results.append(result)
    return Batch(size, results, {("frames", 0): first + size}, MODEL, time.monotonic())  # type: ignore[arg-type]


def transaction(db_url: str, store: FrameStore | None) -> BatchTransaction:
    _, sessions = open_database(db_url)
    settings = Settings(database_url=db_url, group_id="bench", alert_log=False)  # type: ignore[arg-type]
    rules = AlertRules(AlertRuleConfig(None, 99, 99, 0.0))
    return BatchTransaction(sessions, settings, rules, [], ConsumerMetrics(), threading.Event(), None, store)  # type: ignore[arg-type]


def run(work: Path, store_url: str | None, batches: int, size: int, rates: list[float]) -> dict[str, Any]:
    pictures = images(64)
    report: dict[str, Any] = {"image_bytes_per_defect": statistics.mean(sum(map(len, p)) for p in pictures)}
    for rate in rates:
        store = FrameStore(store_url or str(work / f"frames-{rate}"))
        cases = {
            "blobs": transaction(f"sqlite:///{work / f'blobs-{rate}.db'}", None),
            "store": transaction(f"sqlite:///{work / f'store-{rate}.db'}", store),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        rng = np.random.default_rng(1)
        for index in range(batches):
            work_batch = batch(index * size, size, rate, pictures, rng)
            for name, writer in cases.items():  # the same batch, one case right after the other
                started = time.perf_counter()
                writer.write(work_batch)
                times[name].append((time.perf_counter() - started) * 1000)
        row = {name: _summary(values) for name, values in times.items()}
        row["store_vs_blobs_mean"] = round(row["store"]["mean_ms"] / row["blobs"]["mean_ms"], 2)
        report[f"defect_rate_{rate}"] = row
        print(f"defect rate {rate:.0%}: blobs {row['blobs']}  store {row['store']}", flush=True)
    return report


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values[5:])  # the first batches warm up the connection and the page cache
    return {
        "mean_ms": round(statistics.mean(ordered), 2),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rates", default="0.05,0.5", help="comma-separated defect rates")
    parser.add_argument("--store", help="frame store URL (default: a local folder next to the databases)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as work:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, python {platform.python_version()}",
            "command": " ".join(sys.argv),
            "batch_size": args.batch_size,
            "batches": args.batches,
            **run(Path(work), args.store, args.batches, args.batch_size, rates),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"frame-store-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
