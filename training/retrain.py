"""`lineguard retrain`: train the next version of a model the way the base was trained (its ONNX metadata's training
config), on the normal images plus the frames reviewers marked false positive, then evaluate the new and the base
model on one fixed evaluation set and write the report the promotion gate reads."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.inference import read_metadata
from pipeline.registry.report import ComparisonReport
from pipeline.storage.engine import open_database
from training.config import TrainConfig
from training.data.evalset import build_evaluation_set, split_normals
from training.data.images import list_images
from training.data.images import train_folder as find_train_folder
from training.data.reviewed import CONFIRMED, FALSE_POSITIVE, export_reviewed
from training.errors import ConfigError, TrainingError
from training.evaluation.comparison import compare, write_comparison
from training.train import train

log = logging.getLogger(__name__)

# Run-specific fields of the base's training config, set anew for each run.
NOT_INHERITED = frozenset({"data_dir", "out", "model_name", "model_version", "show_progress"})


@dataclass(frozen=True)
class RetrainConfig:
    """One retraining: where the reviews are, the base model, the normal images and where the new model goes."""

    db_url: str
    base: Path
    normal_dir: Path
    out: Path
    since: datetime | None = None  # reviewed defects captured at or after
    epochs: int | None = None  # None: the base's
    max_minutes: float | None = None  # None: the base's
    model_version: str = ""  # default: UTC timestamp
    holdout_fraction: float = 0.2
    holdout_seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("holdout_fraction", 0 < self.holdout_fraction < 0.5, "must be in (0, 0.5)"),
            ("epochs", self.epochs is None or self.epochs >= 1, "must be >= 1"),
            ("max_minutes", self.max_minutes is None or self.max_minutes > 0, "must be > 0"),
            ("out", self.out.resolve() != self.base.resolve(), "must not overwrite the base model"),
        ]
        for name, ok, reason in checks:
            if not ok:
                raise ConfigError(name, getattr(self, name), reason)

    @property
    def workdir(self) -> Path:
        """`<out>.data/`: the training images (normals linked, false positives written) and the reviewed frames."""
        return self.out.with_name(self.out.name + ".data")


def inherited_config(training_config: dict[str, Any], base: Path) -> dict[str, Any]:
    """TrainConfig fields from the base's recorded training config, so the new model is trained the same way."""
    if not training_config:
        raise TrainingError(f"{base} carries no training_config in its metadata: it was not made by `lineguard train`")
    known = {f.name for f in fields(TrainConfig)} - NOT_INHERITED
    values = {key: value for key, value in training_config.items() if key in known}
    backbone = values.get("backbone")
    if isinstance(backbone, dict):  # recorded with its weights' digest and licence; the config wants the name
        values["backbone"] = backbone["name"]
    if "widths" in values:
        values["widths"] = tuple(values["widths"])
    labelled = values.get("labelled_val_dir")
    values["labelled_val_dir"] = Path(labelled) if labelled and Path(labelled).is_dir() else None
    if labelled and values["labelled_val_dir"] is None:
        log.warning("the base's labelled validation set %s is gone: thresholds from held-out normals", labelled)
    return values


def retrain(cfg: RetrainConfig) -> ComparisonReport:
    """Train, evaluate both models, write the report next to the new model; returns the report."""
    base_meta = read_metadata(cfg.base)
    inherited = inherited_config(base_meta.training_config, cfg.base)
    normals = list_images(find_train_folder(cfg.normal_dir))
    kept, held_out = split_normals(normals, cfg.holdout_fraction, cfg.holdout_seed)
    if cfg.workdir.exists():
        shutil.rmtree(cfg.workdir)  # a rerun starts from the database and folders as they are now
    _, sessions = open_database(cfg.db_url)
    with sessions() as session:
        false_positives, fp_skipped = export_reviewed(
            session, FALSE_POSITIVE, cfg.workdir / "false_positives", cfg.since
        )
        confirmed, confirmed_skipped = export_reviewed(session, CONFIRMED, cfg.workdir / "confirmed", cfg.since)
    if not false_positives:
        log.warning("no reviewed false positives%s: training on the normal images only", _window(cfg))
    train_dir = cfg.workdir / "train" / "good"
    train_dir.mkdir(parents=True)
    for path in kept:
        _link(path, train_dir / f"normal-{path.name}")
    for frame in false_positives:
        _link(frame.path, train_dir / frame.path.name)
    details = {
        "normal_dir": str(cfg.normal_dir.resolve()),
        "holdout_fraction": cfg.holdout_fraction,
        "holdout_seed": cfg.holdout_seed,
        "reviews_since": cfg.since.isoformat() if cfg.since else None,
    }
    evaluation = build_evaluation_set(held_out, confirmed, false_positives, details)
    overrides = {"epochs": cfg.epochs, "max_minutes": cfg.max_minutes}
    train_cfg = TrainConfig(
        **(inherited | {k: v for k, v in overrides.items() if v is not None}),
        data_dir=cfg.workdir,
        out=cfg.out,
        model_name=base_meta.model_name,
        model_version=cfg.model_version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        show_progress=False,
    )
    train(train_cfg)
    training = {
        "base": f"{base_meta.model_name} v{base_meta.model_version}",
        "normal_images": len(kept),
        "false_positives": len(false_positives),
        "left_out": fp_skipped + confirmed_skipped,
        "overrides": {k: v for k, v in overrides.items() if v is not None},
    }
    report, candidate, base = compare(cfg.out, cfg.base, evaluation, training)
    for path in write_comparison(report, candidate, base, evaluation, cfg.out):
        log.info("wrote %s", path)
    return report


def _window(cfg: RetrainConfig) -> str:
    return f" since {cfg.since.isoformat()}" if cfg.since else ""


def _link(source: Path, target: Path) -> None:
    # A hard link costs no space and keeps the bytes the manifest's digest names; other filesystems get a copy.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
