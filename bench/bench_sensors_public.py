"""Sensor detection on series nobody tuned for: one command for every set, train-sensors defaults against the old ones.

    python bench/bench_sensors_public.py --aeon-data DIR           # DIR: aeon/datasets/data of the aeon wheel
    python bench/bench_sensors_public.py --max-minutes 1 --skip-ucr
    python bench/bench_sensors_public.py --skip-ucr --setting defaults --setting calendar   # --calendar day,week

For each series: `train_sensors` with default settings on its training rows, `evaluate_sensors` on the rest (what
`lineguard train-sensors TRAIN.csv --out M.onnx` and `lineguard evaluate M.onnx TEST.csv --json` run), and the same
with the settings of before (window 60, stride 1, no level-free channel, mean level, 0.99 quantile of a held-out
tail, a row flagged only when every window covering it is above the threshold) as the baseline. Labels are read
for scoring only.

Sets:
- `ucr-internalbleeding16`: real, univariate, labelled: UCR anomaly archive series 135 (KDD Cup 2021, "135_UCR_
  Anomaly_InternalBleeding16"), as shipped inside the `aeon` wheel (aeon/datasets/data/KDD-TSAD_135; aeon 1.6.0,
  BSD-3). Train: its TRAIN file (1,200 normal rows); evaluated: the TEST file's rows after those 1,200. Fetch
  without installing: `pip download aeon==1.6.0 --no-deps` and unzip `aeon/datasets/data/*`.
- `synthetic-*`: GENERATED here (not real data), univariate, shaped like monitoring series: 5-minute to hourly
  sampling, daily and weekly rhythms, slow trends and a level shift that is normal; anomalies in wide labelled
  windows after the first 30 % (a burst, a flattened cycle, a drop, a changed rhythm). Train: the first 30 %;
  evaluated: the rest. Seeds fixed.

Prints a table and writes bench/results/sensors-public-<UTC time>.json.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.sensors.config import SensorTrainConfig  # noqa: E402
from training.sensors.data import CsvColumns  # noqa: E402
from training.sensors.evaluate import evaluate_sensors  # noqa: E402
from training.sensors.report import evaluate_with_report  # noqa: E402
from training.sensors.train import train_sensors  # noqa: E402

UCR = "KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16"
OLD_DEFAULTS: dict[str, Any] = {
    "window": 60,
    "stride": 1,
    "level_free": (),
    "level_statistic": "mean",
    "false_alarm_rate": None,
    "calibration_quantile": 0.99,
    "point_rule": "all-windows",
}
SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "before": OLD_DEFAULTS,
    "calendar": {"calendar": ("day", "week")},  # train-sensors --calendar day,week
}
KEYS = ("point_f1", "point_far", "point_mar", "window_f1", "window_far", "window_mar", "window_auroc", "point_auroc")


def write_csv(path: Path, stamps_s: np.ndarray, values: np.ndarray, labels: np.ndarray) -> Path:
    lines = ["timestamp,value,label"] + [
        f"{int(t)},{v:.5f},{int(y)}" for t, v, y in zip(stamps_s, values, labels, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def ucr_series(aeon_data: Path, work: Path) -> list[tuple[str, Path, Path]]:
    train = np.loadtxt(aeon_data / f"{UCR}_TRAIN.csv", delimiter=",", skiprows=1)
    test = np.loadtxt(aeon_data / f"{UCR}_TEST.csv", delimiter=",", skiprows=1)
    rest = test[len(train) :]
    return [
        (
            "ucr-internalbleeding16",
            write_csv(work / "ucr-train.csv", train[:, 0], train[:, 1], train[:, 2]),
            write_csv(work / "ucr-test.csv", rest[:, 0], rest[:, 1], rest[:, 2]),
        )
    ]


def synthetic(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Unix seconds, values, labels) of one generated monitoring series; anomalies after its first 30 %."""
    rng = np.random.default_rng(seed)
    step_s, days = {"cpu-5min": (300, 28), "demand-hourly": (3600, 150), "users-15min": (900, 60)}[kind]
    n = days * 86_400 // step_s
    t = np.arange(n) * step_s + 1_767_225_600  # from 2026-01-01 UTC
    day = 2 * np.pi * (t % 86_400) / 86_400
    weekday = ((t // 86_400) + 3) % 7  # 1970-01-01 was a Thursday
    weekend = weekday >= 5
    level = np.where(weekend, 0.6, 1.0) * (1 + 0.8 * np.sin(day - np.pi / 2))
    trend = np.linspace(0, 0.8 if kind != "users-15min" else 1.5, n)
    shift = np.where(np.arange(n) > int(0.55 * n), 0.7, 0.0)  # a normal level shift (new capacity, new customers)
    values = 10 + 3 * level + trend + shift + 0.25 * rng.standard_normal(n)
    labels = np.zeros(n, dtype=int)
    per_day = 86_400 // step_s
    starts = np.sort(rng.choice(np.arange(int(0.35 * n), n - 2 * per_day), size=3, replace=False))
    for index, start in enumerate(starts):
        width = per_day // 4 if index != 1 else per_day // 2
        span = slice(start, start + width)
        if index == 0:  # a burst
            values[span] += 2.5 + 0.8 * rng.standard_normal(width)
        elif index == 1:  # the daily rhythm stops: flat at the day's mean
            values[span] = values[span].mean() + 0.25 * rng.standard_normal(width)
        else:  # a drop well below the usual trough
            values[span] -= 3.0
        labels[span] = 1
    return t, values, labels


def synthetic_series(work: Path) -> list[tuple[str, Path, Path]]:
    found = []
    for seed, kind in enumerate(("cpu-5min", "demand-hourly", "users-15min")):
        t, v, y = synthetic(kind, seed)
        cut = int(0.3 * len(t))
        name = f"synthetic-{kind}"
        found.append(
            (
                name,
                write_csv(work / f"{name}-train.csv", t[:cut], v[:cut], y[:cut]),
                write_csv(work / f"{name}-test.csv", t[cut:], v[cut:], y[cut:]),
            )
        )
    return found


def run_one(name: str, train: Path, test: Path, setting: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"{name}-{setting}.onnx"
    extra = SETTINGS[setting]
    started = time.monotonic()
    cfg = SensorTrainConfig(data=train, out=out, max_minutes=args.max_minutes, show_progress=False, **extra)
    train_sensors(cfg)
    report = args.report / f"{name}-{setting}" if args.report else None
    judged = evaluate_sensors(out, test) if report is None else evaluate_with_report(out, test, CsvColumns(), report)
    result = judged.to_dict()
    from pipeline.inference import read_metadata

    spec = read_metadata(out).sensor
    assert spec is not None
    row = {"series": name, "setting": setting, **{k: result[k] for k in KEYS}, "seconds": time.monotonic() - started}
    row |= {"window": spec.window_length, "period": spec.period_samples, "level_free": list(spec.level_free_channels)}
    logging.info("%s %s: %s", name, setting, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aeon-data", type=Path, help="aeon/datasets/data of the aeon wheel (default: installed aeon)")
    parser.add_argument("--skip-ucr", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=1.0)
    parser.add_argument("--report", type=Path, help="also write evaluate --report folders here")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--setting",
        dest="settings",
        action="append",
        choices=sorted(SETTINGS),
        help="repeatable; default: defaults and before ('calendar': defaults plus --calendar day,week)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared 2-core machine: 1)")
    args = parser.parse_args()
    args.settings = args.settings or ["defaults", "before"]
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pipeline.sensors.model", "training.sensors.train", "training.sensors.choose", "training.fitting"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sensors-public-") as folder:
        work = Path(folder)
        series = synthetic_series(work)
        if not args.skip_ucr:
            series = ucr_series(args.aeon_data or installed_aeon_data(), work) + series
        for name, train, test in series:
            for setting in args.settings:
                rows.append(run_one(name, train, test, setting, args, work))
    print(f"\n{'series':32s} {'setting':9s} " + " ".join(f"{k:>12s}" for k in KEYS) + "  window")
    for row in rows:
        cells = " ".join(f"{row[k]:12.3f}" if row[k] is not None else f"{'-':>12s}" for k in KEYS)
        print(f"{row['series']:32s} {row['setting']:9s} {cells}  {row['window']} (period {row['period']})")
    for setting in args.settings:
        mine = [r for r in rows if r["setting"] == setting]
        means = " ".join(f"{np.mean([r[k] for r in mine if r[k] is not None]):12.3f}" for k in KEYS)
        print(f"{'mean':32s} {setting:9s} {means}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sensors-public-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    path.write_text(json.dumps({"machine": machine, "max_minutes": args.max_minutes, "rows": rows}, indent=2))
    print(f"written: {path}")


def installed_aeon_data() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("aeon")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "the UCR series ships in the aeon wheel: pip install aeon==1.6.0, or pip download aeon==1.6.0 --no-deps, "
            "unzip 'aeon/datasets/data/*' and pass --aeon-data .../aeon/datasets/data (or --skip-ucr)"
        )
    return Path(spec.origin).parent / "datasets" / "data"


if __name__ == "__main__":
    main()
