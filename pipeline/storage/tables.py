"""Database tables (SQLAlchemy 2 typed mappings): defects, inspection counts, models served and registered, offsets,
alert outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    # SQLAlchemy reads this class attribute as declared; it is never mutated.
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Defect(Base):
    """A frame judged defective; (source_topic, source_partition, source_offset) makes replays harmless."""

    __tablename__ = "defects"
    __table_args__ = (
        UniqueConstraint("source_topic", "source_partition", "source_offset", name="uq_defects_source"),
        # Review listings are newest first: each filter's index ends in captured_at, so a page is read in order
        # instead of sorting every match (bench/bench_review_queries.py, docs/BENCHMARKS.md).
        Index("ix_defects_captured", "captured_at", "id"),
        Index("ix_defects_camera_captured", "camera_id", "captured_at"),
        Index("ix_defects_line_captured", "line_id", "captured_at"),
        Index("ix_defects_status_captured", "review_status", "captured_at"),
        Index("ix_defects_label_captured", "label", "captured_at"),
        Index("ix_defects_score", "score"),
        Index("ix_defects_model_captured", "model_version", "captured_at"),
        Index("ix_defects_cluster_captured", "cluster", "captured_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_topic: Mapped[str] = mapped_column(String(249))
    source_partition: Mapped[int] = mapped_column(Integer)
    source_offset: Mapped[int] = mapped_column(BigInteger)
    camera_id: Mapped[str] = mapped_column(String(128))
    line_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(BigInteger)  # camera frame counters outgrow 32 bits
    captured_at: Mapped[datetime]
    detected_at: Mapped[datetime]
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    regions: Mapped[list[Any]]
    frame_content_type: Mapped[str | None] = mapped_column(String(64))
    frame: Mapped[bytes | None] = mapped_column(LargeBinary)
    overlay_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    restored_png: Mapped[bytes | None] = mapped_column(LargeBinary)  # the model's restored frame
    # Frame store references (pipeline/frames/store.py); the three blobs above are only set on rows written before it.
    frame_uri: Mapped[str | None] = mapped_column(Text)
    overlay_uri: Mapped[str | None] = mapped_column(Text)
    restored_uri: Mapped[str | None] = mapped_column(Text)
    ground_truth: Mapped[str | None] = mapped_column(String(64))  # simulator header, for measurement only
    review_status: Mapped[str] = mapped_column(String(16), default="new", server_default="new")
    label: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)  # the reviewer's free text
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    # `lineguard cluster`: the defect's cluster in the last clustering of the encoder's embeddings; -1 = noise (dbscan)
    cluster: Mapped[int | None] = mapped_column(Integer)


class InspectionCount(Base):
    """Per camera and interval: frames seen, defects, score and latency sums (means = sum / frames)."""

    __tablename__ = "inspection_counts"
    __table_args__ = (UniqueConstraint("camera_id", "interval_start", name="uq_counts_camera_interval"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(128))
    line_id: Mapped[str] = mapped_column(String(128))
    interval_start: Mapped[datetime]
    interval_s: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer)
    defects: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float] = mapped_column(Float)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    latency_ms_max: Mapped[float] = mapped_column(Float)


class ModelVersion(Base):
    """A model that has served on this line, with the thresholds it ran with."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "model_version", name="uq_model_versions"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[str] = mapped_column(String(128))
    image_threshold: Mapped[float] = mapped_column(Float)
    pixel_threshold: Mapped[float] = mapped_column(Float)
    path: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(64))
    first_served_at: Mapped[datetime]


class RegisteredModel(Base):
    """A model version in the registry (`lineguard models promote`): its file, metadata and evaluation metrics."""

    __tablename__ = "model_registry"
    __table_args__ = (UniqueConstraint("model_name", "model_version", name="uq_model_registry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    file_sha256: Mapped[str] = mapped_column(String(64))  # consumers refuse a file changed after registration
    model_metadata: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any] | None]  # on the evaluation set it was registered with
    evaluation_digest: Mapped[str | None] = mapped_column(String(64))
    registered_at: Mapped[datetime]


class ModelPromotion(Base):
    """One promotion decision (promoted, forced, refused, initial): who, why, against what, on which metrics."""

    __tablename__ = "model_promotions"
    __table_args__ = (Index("ix_model_promotions_version", "version_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_registry.id"))
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_registry.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    comparison: Mapped[dict[str, Any]]
    decided_at: Mapped[datetime]


class ActiveModel(Base):
    """The version consumers of a model name serve with `model_source=registry`: one row per name."""

    __tablename__ = "active_models"
    __table_args__ = (UniqueConstraint("model_name", name="uq_active_models"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_registry.id"))
    promotion_id: Mapped[int] = mapped_column(ForeignKey("model_promotions.id"))
    activated_at: Mapped[datetime]


class SourceOffset(Base):
    """Next offset to process per group and partition, written in each batch transaction.

    Kafka's committed offset may lag this after a crash between the database commit and the Kafka
    commit; records below it are skipped on replay, so counts and alerts are not applied twice either.
    """

    __tablename__ = "source_offsets"
    __table_args__ = (UniqueConstraint("group_id", "topic", "partition", name="uq_source_offsets"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(String(249))
    topic: Mapped[str] = mapped_column(String(249))
    partition: Mapped[int] = mapped_column(Integer)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class Alert(Base):
    """An alert raised by a rule, written in the batch transaction (the outbox)."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_alerts_dedupe"),
        Index("ix_alerts_camera_created", "camera_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255))
    rule: Mapped[str] = mapped_column(String(32))
    camera_id: Mapped[str] = mapped_column(String(128))
    line_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]


class AlertRuleState(Base):
    """Per camera: its recent verdicts (the burst window), its drift and when each rule last fired, saved with each
    batch."""

    __tablename__ = "alert_rule_state"
    __table_args__ = (UniqueConstraint("camera_id", name="uq_alert_rule_state_camera"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(128))
    window: Mapped[list[Any]]  # 0/1 per frame, oldest first
    last_alert: Mapped[dict[str, Any]]  # rule -> ISO detection time
    drift: Mapped[dict[str, Any] | None]  # pipeline.alerting.rules.DriftState; None before migration 0009
    updated_at: Mapped[datetime]


class AlertDelivery(Base):
    """One alert on one channel; pending until the channel accepts it, retried with backoff."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel", name="uq_alert_deliveries"),
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class SensorAnomaly(Base):
    """A sensor window scored above its threshold; the record that completed it plus the window start make replays
    harmless."""

    __tablename__ = "sensor_anomalies"
    __table_args__ = (
        UniqueConstraint(
            "source_topic", "source_partition", "source_offset", "window_start", name="uq_sensor_anomalies_source"
        ),
        Index("ix_sensor_anomalies_device_start", "device_id", "window_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_topic: Mapped[str] = mapped_column(String(249))
    source_partition: Mapped[int] = mapped_column(Integer)
    source_offset: Mapped[int] = mapped_column(BigInteger)
    device_id: Mapped[str] = mapped_column(String(128))
    line_id: Mapped[str] = mapped_column(String(128))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    detected_at: Mapped[datetime]
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    top_channels: Mapped[list[Any]]  # [{"channel": name, "share": fraction of the window's error}], largest first
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))


class SensorWindowState(Base):
    """Per group, partition and device: the readings after the last emitted window, saved with each batch, so that
    a restarted or newly assigned consumer continues the windows exactly."""

    __tablename__ = "sensor_window_state"
    __table_args__ = (UniqueConstraint("group_id", "topic", "partition", "device_id", name="uq_sensor_window_state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(String(249))
    topic: Mapped[str] = mapped_column(String(249))
    partition: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str] = mapped_column(String(128))
    line_id: Mapped[str] = mapped_column(String(128))
    channels: Mapped[list[Any]]  # the model's channel order the readings are in
    timestamps: Mapped[bytes] = mapped_column(LargeBinary)  # float64 little-endian Unix ms
    readings: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, samples x channels
    last_ts_ms: Mapped[float | None] = mapped_column(Float)
    period_ms: Mapped[float | None] = mapped_column(Float)
    next_offset: Mapped[int] = mapped_column(BigInteger)  # the offset after the last record applied
    # An adapted model's (pipeline.sensors.adapt): the adapt_rows the state was kept for, and the current run's baseline
    # per channel (float64 little-endian) once its first rows have arrived; until then they wait in `readings`.
    adapt_rows: Mapped[int] = mapped_column(Integer, server_default="0")
    baseline_level: Mapped[bytes | None] = mapped_column(LargeBinary)
    baseline_scale: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]
