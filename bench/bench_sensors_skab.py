"""Detection quality on SKAB (outlier detection): F1, false-alarm rate (FAR) and missed-alarm rate (MAR).

    python bench/bench_sensors_skab.py                                 # sensor-cae, the published protocol
    python bench/bench_sensors_skab.py --model sensor-dae --model sensor-vae

The protocol of SKAB's published Conv-AE notebook (notebooks/Conv_AE.ipynb, core/metrics.py): for each of the
34 labelled recordings (valve1, valve2, other), a model is trained on the recording's first 400 rows only, windows
of 60 samples at stride 1; every row of the recording is then labelled, and one confusion matrix is pooled over
all recordings (F1 = TP / (TP + (FN + FP) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP)). A row is anomalous
when every window that contains it scores above the threshold (the notebook's rule). Differences, on purpose:
the threshold comes from the last 20 % of the 400 rows, held out from training (the notebook takes 4/3 of the
0.999 quantile of the training windows' own residuals), and training, calibration and scoring run the exported
ONNX file through the line's SensorModel. The `anomaly` column is read for scoring only.

Also reported: the same figures on the rows after the first 400 only (the rows no model was fitted or
calibrated on). Prints a table and writes bench/results/sensors-skab-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.sensors.model import SensorModel  # noqa: E402
from training.sensors.config import SensorTrainConfig  # noqa: E402
from training.sensors.data import CsvColumns, read_sensor_csv, sensor_files  # noqa: E402
from training.sensors.evaluate import Counts, point_verdicts, window_scores  # noqa: E402
from training.sensors.train import train_sensors  # noqa: E402

# SKAB's proposed leaderboard, outlier detection (README of waico/SKAB): F1, FAR %, MAR %
LEADERBOARD = {"Conv-AE": (0.78, 13.55, 28.02), "MSET": (0.78, 39.73, 14.13), "LSTM-AE": (0.74, 29.96, 25.92)}
LEADERBOARD |= {"Vanilla AE": (0.39, 2.59, 75.15)}
# The notebooks take each file's rows as consecutive samples whatever their timestamps (some files have steps of up
# to 247 s); the line, and `lineguard evaluate`, split a recording at such gaps instead.
ROWS = CsvColumns(gap_periods=None)


def labelled_files(data: Path) -> list[Path]:
    return [f for f in sensor_files(data) if "anomaly-free" not in f.parts]


def run_model(model: str, files: list[Path], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train one model per recording on its first rows, score the whole recording, pool the counts."""
    every, after, per_file = Counts(), Counts(), []
    started = time.monotonic()
    for file in files:
        series = read_sensor_csv(file, ROWS)
        lines = file.read_text().splitlines()
        prefix = work / f"{file.parent.name}-{file.stem}.csv"
        prefix.write_text("\n".join(lines[: args.train_rows + 1]) + "\n")  # header + the first rows
        out = work / f"{model}-{file.parent.name}-{file.stem}.onnx"
        cfg = SensorTrainConfig(
            data=prefix,
            out=out,
            model=model,
            scale_data=None if args.no_scale_data else args.data / "anomaly-free",
            columns=ROWS,
            level_free=None
            if args.level_free == "auto"
            else tuple(name for name in args.level_free.split(",") if name),
            window=args.window,
            stride=1,
            false_alarm_rate=None,  # the protocol: a quantile of the held-out tail's window scores
            calibration_quantile=args.quantile,
            sensitivity=args.sensitivity,
            seed=args.seed,
            show_progress=False,
        )
        train_sensors(cfg)
        scorer = SensorModel(out, prefer_gpu=False)
        scores = window_scores(scorer, series.values)
        verdicts = point_verdicts(scores, len(series.values), args.window, scorer.metadata.image_threshold)
        labels = series.labels
        assert labels is not None, file
        counts = Counts.of(verdicts, labels)
        later = Counts.of(verdicts[args.train_rows :], labels[args.train_rows :])
        every, after = every + counts, after + later
        per_file.append({"file": f"{file.parent.name}/{file.name}", **counts.__dict__, "f1": counts.f1})
        logging.info(
            "%s %s/%s: F1 %.3f FAR %.3f MAR %.3f", model, file.parent.name, file.name, counts.f1, counts.far, counts.mar
        )
    return {
        "model": model,
        "all_rows": {"f1": every.f1, "far": every.far, "mar": every.mar, **every.__dict__},
        "rows_after_training": {"f1": after.f1, "far": after.far, "mar": after.mar, **after.__dict__},
        "seconds": time.monotonic() - started,
        "files": per_file,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "skab" / "data")
    parser.add_argument("--model", action="append", help="registered sensor model (repeatable); default sensor-cae")
    parser.add_argument("--train-rows", type=int, default=400)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--quantile", type=float, default=0.99)
    parser.add_argument("--sensitivity", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-scale-data", action="store_true", help="std from the 400 rows only (no anomaly-free floor)"
    )
    parser.add_argument(
        "--level-free",
        default="",
        help="channels scored on shape, not level, e.g. Temperature,Thermocouple (they drift with warm-up); "
        "'auto': those whose level drifts in the 400 rows (train-sensors' default)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared 2-core machine: 1)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pipeline.sensors.model", "training.sensors.train"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    files = labelled_files(args.data)
    results: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "protocol": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "recordings": len(files),
        "leaderboard": LEADERBOARD,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="skab-") as work:
        for model in args.model or ["sensor-cae"]:
            results["runs"].append(run_model(model, files, args, Path(work)))
    print(f"\nSKAB outlier detection, {len(files)} recordings, {results['machine']}")
    print(f"{'detector':28s} {'F1':>5s} {'FAR %':>7s} {'MAR %':>7s}   rows after training: F1, FAR %, MAR %   seconds")
    for run in results["runs"]:
        a, b = run["all_rows"], run["rows_after_training"]
        print(
            f"{run['model']:28s} {a['f1']:5.2f} {100 * a['far']:7.2f} {100 * a['mar']:7.2f}   "
            f"{b['f1']:5.2f} {100 * b['far']:6.2f} {100 * b['mar']:6.2f}   {run['seconds']:.0f}"
        )
    for name, (f1, far, mar) in LEADERBOARD.items():
        print(f"{'published ' + name:28s} {f1:5.2f} {far:7.2f} {mar:7.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sensors-skab-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
