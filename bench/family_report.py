"""Markdown tables of a `bench_family.py` result file, for docs/BENCHMARKS.md.

.venv/bin/python bench/family_report.py [bench/results/family.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CORRUPTION_ORDER = ("none", "gaussian", "salt-pepper", "mask", "synthetic")


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def family_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| set | model | image AUROC | pixel AUROC | F1 | training (min) | epochs (best) | ONNX frames/s (batch 32) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["study"] in ("denoising", "kl"):
            continue
        lines.append(
            f"| {row['set']} | `{row['model']}` | {_f(row['image_auroc'])} | {_f(row['pixel_auroc'])} "
            f"| {_f(row['f1'])} | {_f(row['train_minutes'], 1)} | {row['epochs']} ({row['best_epoch']}) "
            f"| {_f(row['fps_batch32'], 0)} |"
        )
        if "unknown_condition" in row:
            fallback = row["unknown_condition"]
            lines.append(
                f"| {row['set']} | `{row['model']}`, unknown camera (index 0) | {_f(fallback['image_auroc'])} "
                f"| {_f(fallback['pixel_auroc'])} | {_f(fallback['f1'])} | (same model) | | |"
            )
    return lines


def denoising_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Per set: one row per corruption (cae-plain), image AUROC per defect kind; the best per column in bold."""
    lines: list[str] = []
    for data_set in dict.fromkeys(row["set"] for row in rows):
        chosen = {
            row.get("corruption", "synthetic"): row
            for row in rows
            if row["set"] == data_set and row["architecture"] == "cae-plain"
        }
        if not chosen:
            continue
        kinds = sorted(next(iter(chosen.values()))["per_kind"])
        columns = [*kinds, "image_auroc", "pixel_auroc"]
        best = {c: max((_value(r, c) for r in chosen.values()), default=None) for c in columns}
        lines += [
            "",
            f"{data_set} (`cae-plain`, AUROC of each defect kind against the good test images):",
            "",
            "| corruption | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for corruption in CORRUPTION_ORDER:
            if corruption not in chosen:
                continue
            cells = []
            for column in columns:
                value = _value(chosen[corruption], column)
                text = _f(value)
                cells.append(f"**{text}**" if value is not None and value == best[column] else text)
            lines.append(f"| `{corruption}` | " + " | ".join(cells) + " |")
    return lines


def _value(row: dict[str, Any], column: str) -> float | None:
    return row["per_kind"].get(column) if column in row["per_kind"] else row.get(column)


def stacked_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| set | training | epochs end to end (best) | validation loss per end-to-end epoch | image AUROC "
        "| pixel AUROC |",
        "|---|---|---:|---|---:|---:|",
    ]
    for row in rows:
        if row["architecture"] != "stacked-ae":
            continue
        how = "greedy pretraining, then end to end" if row.get("pretrain_fraction", 0.3) else "end to end only"
        curve = ", ".join(f"{v:.4f}" for v in row["val_losses"])
        lines.append(
            f"| {row['set']} | {how} | {row['epochs']} ({row['best_epoch']}) | {curve} "
            f"| {_f(row['image_auroc'])} | {_f(row['pixel_auroc'])} |"
        )
    return lines


def kl_table(rows: list[dict[str, Any]]) -> list[str]:
    """`vae` at several KL weights (the default 1e-3 is the family row)."""
    lines = [
        "| set | KL weight | image AUROC | pixel AUROC | F1 | epochs (best) | best validation loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["architecture"] != "vae" or row.get("score") == "elbo":
            continue
        best = min(row["val_losses"]) if row["val_losses"] else None
        lines.append(
            f"| {row['set']} | {row.get('kl_weight', 1e-3):g} | {_f(row['image_auroc'])} | {_f(row['pixel_auroc'])} "
            f"| {_f(row['f1'])} | {row['epochs']} ({row['best_epoch']}) | {_f(best, 4)} |"
        )
    return lines


def main() -> None:
    paths = [Path(arg) for arg in sys.argv[1:]] or [Path("bench/results/family.json")]
    records = [json.loads(path.read_text()) for path in paths]
    record = records[0]
    rows = [row for each in records for row in each["rows"]]
    print(f"{record['date']}, {record['cpus']} CPUs, torch threads {record['torch_threads']}, "
          f"{record['max_minutes']} min budget per run\n")  # fmt: skip
    print("\n".join(family_table(rows)))
    print("\n".join(denoising_tables(rows)))
    print()
    print("\n".join(stacked_table(rows)))
    print()
    print("\n".join(kl_table(rows)))


if __name__ == "__main__":
    main()
