"""The evaluation report `lineguard retrain` writes next to a new model and `lineguard models promote` reads: the new
and the base model's metrics on one fixed evaluation set, whose manifest lies beside it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.errors import RegistryError

REPORT_FORMAT = 1
# The gate's metrics and which way is better; a candidate must not be worse on any the set defines.
GATED: dict[str, str] = {"image_auroc": "higher", "f1": "higher", "false_positive_rate": "lower"}
TOLERANCE = 1e-9  # float noise only: "not worse" means not worse


@dataclass(frozen=True)
class ModelScores:
    """One model's figures on the evaluation set; None where the set cannot define one (no confirmed defect gives no
    AUROC or F1, no reviewed false positive no false-positive rate)."""

    model_name: str
    model_version: str
    path: str
    file_sha256: str
    threshold: float
    image_auroc: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    false_positive_rate: float | None  # reviewed false positives it still flags
    normal_false_alarm_rate: float  # held-out normal images it flags

    def worse_than(self, reference: ModelScores) -> list[str]:
        """The gated metrics on which this model is worse than `reference`, each as a readable phrase."""
        worse = []
        for name, better in GATED.items():
            mine, theirs = getattr(self, name), getattr(reference, name)
            if mine is None or theirs is None:
                continue
            if (mine < theirs - TOLERANCE) if better == "higher" else (mine > theirs + TOLERANCE):
                sign = "<" if better == "higher" else ">"
                worse.append(f"{name.replace('_', ' ')} {mine:.4f} {sign} {theirs:.4f}")
        return worse

    def gated(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in GATED}


@dataclass(frozen=True)
class ComparisonReport:
    """Both models on one evaluation set; `changed` lists the frames whose verdict differs between them."""

    evaluation_digest: str
    manifest: str  # file name of the evaluation set's manifest, next to the report
    counts: dict[str, int]  # images per group of the evaluation set
    candidate: ModelScores
    base: ModelScores
    changed: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)  # every image with both models' scores
    training: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = REPORT_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> ComparisonReport:
        """Parse a report; a missing, unreadable or foreign file is a RegistryError naming it."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format_version") != REPORT_FORMAT:
                raise ValueError(f"format_version {data.get('format_version')!r}, this runtime reads {REPORT_FORMAT}")
            scores = {name: _scores(data.pop(name)) for name in ("candidate", "base")}
            known = {f.name for f in fields(cls)}
            return cls(**scores, **{k: v for k, v in data.items() if k in known})
        except FileNotFoundError as exc:
            raise RegistryError(f"no evaluation report {path}: make one with `lineguard retrain`") from exc
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RegistryError(f"unreadable evaluation report {path}: {exc}") from exc


def _scores(data: dict[str, Any]) -> ModelScores:
    return ModelScores(**{f.name: data[f.name] for f in fields(ModelScores)})


def report_path(model_path: Path) -> Path:
    """`<model>.report.json`, next to the model (like `<model>.thresholds.json`)."""
    return Path(model_path).with_name(Path(model_path).name + ".report.json")


def summary_path(model_path: Path) -> Path:
    return Path(model_path).with_name(Path(model_path).name + ".report.md")


def roc_path(model_path: Path) -> Path:
    return Path(model_path).with_name(Path(model_path).name + ".roc.png")


def manifest_path(model_path: Path) -> Path:
    """`<model>.evalset.json`: every image of the evaluation set with its sha256."""
    return Path(model_path).with_name(Path(model_path).name + ".evalset.json")
