"""`lineguard demo`: the whole job on embedded defaults, ending with a summary table."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def run_demo(workdir: Path, train_minutes: float) -> dict[str, object]:
    """Make a synthetic line data set, train a small model on its normals, evaluate it; returns the summary."""
    from training.config import TrainConfig
    from training.evaluate import evaluate
    from training.synthetic_data import write_synthetic_dataset
    from training.train import train

    started = time.monotonic()
    data = write_synthetic_dataset(workdir / "parts", n_train=80, n_test_good=20, n_test_defect=20, size=128)
    model_path = train(
        TrainConfig(
            data_dir=data,
            out=workdir / "model.onnx",
            size=64,
            max_minutes=train_minutes,
            epochs=40,
            patience=10,
            model_name="demo-parts",
            model_version="1",
        )
    )
    result, _ = evaluate(model_path, data)
    return {"model": str(model_path), **result.to_dict(), "seconds": time.monotonic() - started}


def demo_command(
    workdir: Annotated[Path | None, typer.Option(help="folder for data, model and database (default: temp)")] = None,
    train_minutes: Annotated[float, typer.Option(help="training time budget")] = 1.0,
) -> None:
    """Run LineGuard end to end on embedded defaults and print a summary."""
    from training.cli import require_training_stack

    require_training_stack()
    folder = workdir or Path(tempfile.mkdtemp(prefix="lineguard-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    summary = run_demo(folder, train_minutes)
    table = Table(title="LineGuard demo", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
