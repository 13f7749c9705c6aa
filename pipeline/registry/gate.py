"""The promotion gate: register a model version and make it the active one only if it is not worse than the active
version on the evaluation set its report was made on; `force` overrides a refusal and is recorded with who and why.

Every decision, a refusal included, is recorded with the version it judged.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.contract import ModelMetadata
from pipeline.errors import RegistryError
from pipeline.inference import file_sha256, read_metadata
from pipeline.registry.report import ComparisonReport, report_path
from pipeline.storage.registry import NewVersion, active_version, record_decision, register_version
from pipeline.storage.tables import RegisteredModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionRequest:
    """What `lineguard models promote` asks for."""

    model_path: Path
    force: bool = False
    reason: str | None = None
    decided_by: str = field(default_factory=getpass.getuser)


@dataclass(frozen=True)
class Decision:
    """The gate's answer: `outcome` is initial, promoted, forced, refused or unchanged; `message` is one line."""

    outcome: str
    model_name: str
    model_version: str
    previous_version: str | None
    message: str

    @property
    def active(self) -> bool:
        return self.outcome != "refused"


@dataclass(frozen=True)
class _Judgement:
    outcome: str
    message: str
    comparison: dict[str, Any]


def promote(sessions: sessionmaker[Session], request: PromotionRequest) -> Decision:
    """Register `request.model_path` and decide; the decision is committed, a refusal too."""
    if request.force and not (request.reason or "").strip():
        raise RegistryError("--force needs --reason: say why the gate is overridden (it is recorded)")
    path = Path(request.model_path).resolve()
    metadata = read_metadata(path)
    digest = file_sha256(path)
    report = _report_for(path, digest, metadata)
    try:
        with sessions() as session, session.begin():
            active = active_version(session, metadata.model_name, lock=True)
            version = register_version(session, _new_version(path, digest, metadata, report))
            previous = active.model_version if active is not None else None
            if active is not None and active.id == version.id:
                return Decision("unchanged", metadata.model_name, metadata.model_version, previous, "already active")
            judged = _judge(version, active, report, request)
            record_decision(
                session, version, active, judged.outcome, request.decided_by, request.reason, judged.comparison
            )
    except IntegrityError as exc:  # a promotion of the same name committed in between
        raise RegistryError(f"another promotion of {metadata.model_name} ran at the same time; run it again") from exc
    log.info("model %s v%s: %s (%s)", metadata.model_name, metadata.model_version, judged.outcome, judged.message)
    return Decision(judged.outcome, metadata.model_name, metadata.model_version, previous, judged.message)


def _report_for(path: Path, digest: str, metadata: ModelMetadata) -> ComparisonReport | None:
    """The model's own evaluation report, if it has one; a report made for another file is an error."""
    if not report_path(path).is_file():
        return None
    report = ComparisonReport.read(report_path(path))
    if report.candidate.file_sha256 != digest:
        raise RegistryError(
            f"{report_path(path)} was made for another file (sha256 {report.candidate.file_sha256[:12]}, this one"
            f" {digest[:12]}): run `lineguard retrain` again"
        )
    return report


def _new_version(path: Path, digest: str, metadata: ModelMetadata, report: ComparisonReport | None) -> NewVersion:
    return NewVersion(
        model_name=metadata.model_name,
        model_version=metadata.model_version,
        path=str(path),
        file_sha256=digest,
        metadata=asdict(metadata),
        metrics=asdict(report.candidate) if report is not None else None,
        evaluation_digest=report.evaluation_digest if report is not None else None,
    )


def _judge(
    version: RegisteredModel, active: RegisteredModel | None, report: ComparisonReport | None, request: PromotionRequest
) -> _Judgement:
    name = f"{version.model_name} v{version.model_version}"
    if report is None:
        if active is None:
            return _Judgement("initial", f"{name} is the first active version of {version.model_name}", {})
        return _refuse_or_force(
            request,
            f"{name} has no evaluation report ({report_path(Path(version.path)).name}) to compare with active"
            f" v{active.model_version}: make one with `lineguard retrain --base {active.path}`",
            {},
        )
    comparison: dict[str, Any] = {
        "evaluation_digest": report.evaluation_digest,
        "candidate": report.candidate.gated(),
        "reference": {"model_version": report.base.model_version, **report.base.gated()},
    }
    if active is not None and active.file_sha256 != report.base.file_sha256:
        return _refuse_or_force(
            request,
            f"{name} was evaluated against v{report.base.model_version}, but v{active.model_version} is active: retrain"
            f" with --base {active.path}",
            comparison,
        )
    against = f"v{active.model_version} (active)" if active is not None else f"v{report.base.model_version} (base)"
    worse = report.candidate.worse_than(report.base)
    if worse:
        evaluation = report.evaluation_digest[:12]
        return _refuse_or_force(
            request, f"{name} is worse than {against} on evaluation set {evaluation}: {'; '.join(worse)}", comparison
        )
    gains = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in report.candidate.gated().items() if v is not None)
    return _Judgement("promoted", f"{name} is not worse than {against}: {gains}", comparison)


def _refuse_or_force(request: PromotionRequest, problem: str, comparison: dict[str, Any]) -> _Judgement:
    if request.force:
        return _Judgement("forced", f"{problem}; forced by {request.decided_by}: {request.reason}", comparison)
    return _Judgement("refused", f"{problem} (--force --reason TEXT overrides, recorded)", comparison)
