"""Two models on one evaluation set, as the line runs them (onnxruntime, each at its own calibrated threshold): image
AUROC, F1, false-positive rate on the reviewed false positives, the frames whose verdict changed; JSON, Markdown and
a ROC figure next to the new model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # servers and CI have no display
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from pipeline.inference import OnnxModel, file_sha256
from pipeline.registry.report import ComparisonReport, ModelScores, manifest_path, roc_path, summary_path
from training.data.evalset import CONFIRMED_DEFECT, FALSE_POSITIVE, HELD_OUT_NORMAL, EvaluationSet
from training.data.images import load_images
from training.evaluation.detection_metrics import image_auroc, threshold_metrics


@dataclass(frozen=True)
class Scored:
    """One model's scores on every image of the set, in the set's order."""

    model: OnnxModel
    scores: np.ndarray

    @property
    def threshold(self) -> float:
        return self.model.metadata.image_threshold

    def flagged(self) -> np.ndarray:
        return self.scores > self.threshold  # the line's rule


def score_set(model_path: Path, evaluation: EvaluationSet) -> Scored:
    model = OnnxModel(model_path)
    images = load_images([Path(image.file) for image in evaluation.images], model.metadata.input_spec)
    return Scored(model, model.score_in_chunks(images).score.astype(np.float64))


def model_scores(scored: Scored, evaluation: EvaluationSet) -> ModelScores:
    groups = np.array([image.group for image in evaluation.images])
    labelled = np.isin(groups, [HELD_OUT_NORMAL, CONFIRMED_DEFECT])
    labels = np.array([image.label for image in evaluation.images])[labelled]
    scores, flagged = scored.scores[labelled], scored.flagged()
    has_defects = bool(labels.sum())
    at_threshold = threshold_metrics(scores, labels, scored.threshold) if has_defects else {}
    false_positives = flagged[groups == FALSE_POSITIVE]
    meta = scored.model.metadata
    return ModelScores(
        model_name=meta.model_name,
        model_version=meta.model_version,
        path=str(scored.model.path.resolve()),
        file_sha256=file_sha256(scored.model.path),
        threshold=scored.threshold,
        image_auroc=image_auroc(scores, labels) if has_defects and labels.min() == 0 else None,
        f1=at_threshold.get("f1"),
        precision=at_threshold.get("precision"),
        recall=at_threshold.get("recall"),
        false_positive_rate=float(false_positives.mean()) if false_positives.size else None,
        normal_false_alarm_rate=float(flagged[groups == HELD_OUT_NORMAL].mean()),
    )


def compare(
    candidate_path: Path, base_path: Path, evaluation: EvaluationSet, training: dict[str, Any]
) -> tuple[ComparisonReport, Scored, Scored]:
    """Score both models on the set and build the report (nothing written yet)."""
    candidate, base = score_set(candidate_path, evaluation), score_set(base_path, evaluation)
    frames = [
        {
            "image": image.name,
            "group": image.group,
            "sha256": image.sha256,
            "base_score": round(float(b), 6),
            "candidate_score": round(float(c), 6),
            "base_verdict": "defect" if bf else "ok",
            "candidate_verdict": "defect" if cf else "ok",
        }
        for image, b, c, bf, cf in zip(
            evaluation.images, base.scores, candidate.scores, base.flagged(), candidate.flagged(), strict=True
        )
    ]
    report = ComparisonReport(
        evaluation_digest=evaluation.digest,
        manifest=manifest_path(candidate_path).name,
        counts=evaluation.counts(),
        candidate=model_scores(candidate, evaluation),
        base=model_scores(base, evaluation),
        changed=[f for f in frames if f["base_verdict"] != f["candidate_verdict"]],
        frames=frames,
        training=training,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return report, candidate, base


def write_comparison(
    report: ComparisonReport, candidate: Scored, base: Scored, evaluation: EvaluationSet, model_path: Path
) -> list[Path]:
    """`<model>.report.json`, `.report.md`, `.roc.png` (when the set has confirmed defects) and `.evalset.json`."""
    from pipeline.registry.report import report_path

    evaluation.write(manifest_path(model_path))
    report_path(model_path).write_text(report.to_json())
    written = [manifest_path(model_path), report_path(model_path)]
    if report.candidate.image_auroc is not None:
        _plot_roc(evaluation, {"base": base, "candidate": candidate}, roc_path(model_path))
        written.append(roc_path(model_path))
    summary_path(model_path).write_text(markdown(report, has_roc=report.candidate.image_auroc is not None))
    written.append(summary_path(model_path))
    return written


def _plot_roc(evaluation: EvaluationSet, models: dict[str, Scored], path: Path) -> None:
    groups = np.array([image.group for image in evaluation.images])
    labelled = np.isin(groups, [HELD_OUT_NORMAL, CONFIRMED_DEFECT])
    labels = np.array([image.label for image in evaluation.images])[labelled]
    figure, axis = plt.subplots(figsize=(5, 5))
    for role, scored in models.items():
        fpr, tpr, _ = roc_curve(labels, scored.scores[labelled])
        meta = scored.model.metadata
        auroc = image_auroc(scored.scores[labelled], labels)
        axis.plot(fpr, tpr, label=f"{role} v{meta.model_version}: AUROC {auroc:.3f}")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate (held-out normals)", ylabel="true positive rate (confirmed defects)")
    axis.set_title("image ROC on the evaluation set")
    axis.legend(loc="lower right")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def markdown(report: ComparisonReport, has_roc: bool) -> str:
    """A short human summary of the report."""
    base, new = report.base, report.candidate
    rows = [
        ("threshold", base.threshold, new.threshold),
        ("image AUROC", base.image_auroc, new.image_auroc),
        ("F1 at own threshold", base.f1, new.f1),
        ("precision", base.precision, new.precision),
        ("recall", base.recall, new.recall),
        ("false-positive rate (reviewed false positives)", base.false_positive_rate, new.false_positive_rate),
        ("false alarms on held-out normals", base.normal_false_alarm_rate, new.normal_false_alarm_rate),
    ]
    counts = report.counts
    lines = [
        f"# {new.model_name} v{new.model_version} against v{base.model_version}",
        "",
        f"Evaluation set `{report.evaluation_digest[:12]}` ({report.manifest}): {counts.get(HELD_OUT_NORMAL, 0)}"
        f" held-out normal images, {counts.get(CONFIRMED_DEFECT, 0)} confirmed defects,"
        f" {counts.get(FALSE_POSITIVE, 0)} reviewed false positives. The false positives are also in the new"
        " model's training set: their rate says whether the line stops flagging them, not how it generalises.",
        "",
        f"| metric | base v{base.model_version} | new v{new.model_version} |",
        "|---|---|---|",
        *(f"| {name} | {_cell(b)} | {_cell(n)} |" for name, b, n in rows),
        "",
    ]
    if has_roc:
        lines += [f"![ROC]({Path(new.path).name}.roc.png)", ""]
    lines.append(f"## Frames whose verdict changed ({len(report.changed)})")
    lines.append("")
    for frame in report.changed[:50]:
        lines.append(
            f"- {frame['image']} [{frame['group']}]: {frame['base_verdict']} ({frame['base_score']:.4f}) ->"
            f" {frame['candidate_verdict']} ({frame['candidate_score']:.4f})"
        )
    if len(report.changed) > 50:
        lines.append(f"- ... {len(report.changed) - 50} more in the JSON report")
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
