"""Model registry queries: register a version, the active version of a model name, promotion decisions, listings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import RegistryError
from pipeline.storage.tables import ActiveModel, ModelPromotion, RegisteredModel

ACTIVATING = ("initial", "promoted", "forced")  # outcomes that make a version the active one
OUTCOMES = (*ACTIVATING, "refused")


@dataclass(frozen=True)
class NewVersion:
    """What registering a model file records."""

    model_name: str
    model_version: str
    path: str
    file_sha256: str
    metadata: dict[str, Any]
    metrics: dict[str, Any] | None = None
    evaluation_digest: str | None = None


@dataclass(frozen=True)
class ActiveTarget:
    """Where the active version of a model name lies, and the digest it was registered with."""

    model_version: str
    path: str
    file_sha256: str


@dataclass(frozen=True)
class VersionListing:
    """One registered version with whether it is active and its latest promotion decision."""

    version: RegisteredModel
    active: bool
    last_decision: ModelPromotion | None


def find_version(session: Session, model_name: str, model_version: str) -> RegisteredModel | None:
    query = select(RegisteredModel).where(
        RegisteredModel.model_name == model_name, RegisteredModel.model_version == model_version
    )
    return session.scalars(query).first()


def register_version(session: Session, new: NewVersion) -> RegisteredModel:
    """The version's row, added on first registration. A version is one file: the same name and version with
    another file is an error (versions are never overwritten, so every decision keeps pointing at what it judged)."""
    existing = find_version(session, new.model_name, new.model_version)
    if existing is not None:
        if existing.file_sha256 != new.file_sha256:
            raise RegistryError(
                f"{new.model_name} v{new.model_version} is already registered with another file ({existing.path},"
                f" sha256 {existing.file_sha256[:12]}); give the new model its own version"
            )
        if existing.metrics is None and new.metrics is not None:
            existing.metrics, existing.evaluation_digest = new.metrics, new.evaluation_digest
        existing.path = new.path  # the same bytes, perhaps moved: consumers read it from where it is now
        return existing
    row = RegisteredModel(
        model_name=new.model_name,
        model_version=new.model_version,
        path=new.path,
        file_sha256=new.file_sha256,
        model_metadata=new.metadata,
        metrics=new.metrics,
        evaluation_digest=new.evaluation_digest,
        registered_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()  # its id, for the promotion record
    return row


def active_version(session: Session, model_name: str, lock: bool = False) -> RegisteredModel | None:
    """The active version of `model_name` (row-locked with `lock`, so that two promotions cannot both win)."""
    query = select(ActiveModel).where(ActiveModel.model_name == model_name)
    pointer = session.scalars(query.with_for_update() if lock else query).first()
    return None if pointer is None else session.get(RegisteredModel, pointer.version_id)


def active_target(session: Session, model_name: str | None, kind: str = "image") -> ActiveTarget | None:
    """Where consumers find the active version of `model_name` (None: the most recently activated of any name of
    that kind: "image" or "sensor", from the version's stored metadata)."""
    query = select(
        RegisteredModel.model_version, RegisteredModel.path, RegisteredModel.file_sha256, RegisteredModel.model_metadata
    ).join(ActiveModel, ActiveModel.version_id == RegisteredModel.id)
    if model_name is not None:
        query = query.where(ActiveModel.model_name == model_name)
    rows = session.execute(query.order_by(ActiveModel.activated_at.desc(), ActiveModel.id.desc()))
    for version, path, digest, metadata in rows:
        if model_name is not None or (metadata or {}).get("kind", "image") == kind:
            return ActiveTarget(version, path, digest)
    return None


def record_decision(
    session: Session,
    version: RegisteredModel,
    previous: RegisteredModel | None,
    outcome: str,
    decided_by: str,
    reason: str | None,
    comparison: dict[str, Any],
) -> ModelPromotion:
    """Record one promotion decision; an activating outcome also makes `version` the active one of its name."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    now = datetime.now(UTC)
    decision = ModelPromotion(
        version_id=version.id,
        previous_version_id=previous.id if previous is not None else None,
        outcome=outcome,
        decided_by=decided_by,
        reason=reason,
        comparison=comparison,
        decided_at=now,
    )
    session.add(decision)
    session.flush()
    if outcome in ACTIVATING:
        pointer = session.scalars(select(ActiveModel).where(ActiveModel.model_name == version.model_name)).first()
        if pointer is None:
            session.add(
                ActiveModel(
                    model_name=version.model_name, version_id=version.id, promotion_id=decision.id, activated_at=now
                )
            )
        else:
            pointer.version_id, pointer.promotion_id, pointer.activated_at = version.id, decision.id, now
    return decision


def list_versions(session: Session, model_name: str | None = None) -> list[VersionListing]:
    """Registered versions, newest first, each with whether it is active and its latest decision."""
    query = select(RegisteredModel).order_by(RegisteredModel.registered_at.desc(), RegisteredModel.id.desc())
    if model_name is not None:
        query = query.where(RegisteredModel.model_name == model_name)
    versions = list(session.scalars(query))
    active = set(session.scalars(select(ActiveModel.version_id)))
    latest: dict[int, ModelPromotion] = {}
    for decision in session.scalars(select(ModelPromotion).order_by(ModelPromotion.id)):
        latest[decision.version_id] = decision
    return [VersionListing(v, v.id in active, latest.get(v.id)) for v in versions]


def decisions_of(session: Session, version: RegisteredModel) -> list[ModelPromotion]:
    """Every promotion decision on one version, oldest first."""
    query = select(ModelPromotion).where(ModelPromotion.version_id == version.id).order_by(ModelPromotion.id)
    return list(session.scalars(query))
