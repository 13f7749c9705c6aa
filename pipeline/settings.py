"""Runtime settings: one pydantic-settings class read from LINEGUARD_* variables, an optional file and CLI overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Size limits are set together: a frame of up to max_frame_bytes plus its headers must fit in one
# Kafka record. The producer's max_request_size and the consumer's max_partition_fetch_bytes are
# derived from max_message_bytes; the broker's message.max.bytes (Apache Kafka) or the topic's
# max.message.bytes must be at least max_message_bytes (the broker launcher and docker-compose set it).
HEADER_HEADROOM_BYTES = 64 * 1024
MIN_WEBHOOK_SECRET_CHARS = 32


class Settings(BaseSettings):
    """Everything the line runtime reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_", extra="ignore", frozen=True)

    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    frames_topic: str = "lineguard.frames"
    dlq_topic: str = "lineguard.dlq"
    alerts_topic: str = "lineguard.alerts"
    group_id: str = "lineguard"
    client_id: str = "lineguard"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    poll_timeout_ms: int = 200
    max_frame_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # Decoded size cap, read from the PNG/JPEG header before decoding: a small compressed file can expand
    # to gigabytes (a decompression bomb). 40 MP covers 8K line cameras; see `memory_bound_bytes`.
    max_frame_pixels: int = Field(default=40_000_000, gt=0)
    # Dead-letter sends that fail (topic missing, broker down) are retried with backoff, the batch held.
    dlq_retry_initial_s: float = Field(default=0.5, gt=0)
    dlq_retry_max_s: float = Field(default=30.0, gt=0)
    dlq_send_timeout_s: float = Field(default=30.0, gt=0)
    # On revoke, wait at most this long for the batch being written (a database outage must not stall the group).
    rebalance_settle_s: float = Field(default=5.0, ge=0)

    # Storage and model
    # A secret: it usually carries the password (shown as ********** in logs and reprs; read it with `db_url`).
    database_url: SecretStr = SecretStr("sqlite:///lineguard.db")
    # PostgreSQL: connect, statement and lock timeouts, so that a hung server or a held lock is an error to retry.
    db_connect_timeout_s: int = Field(default=10, ge=1)
    db_statement_timeout_s: float = Field(default=60.0, gt=0)
    db_lock_timeout_s: float = Field(default=15.0, gt=0)
    model_path: Path | None = None
    # A sensor model (kind "sensor"): sensor records (content-type application/x-sensor) are windowed and scored with
    # it on the same consumer; without it they are dead-lettered, as frames are on a consumer with only this model.
    sensor_model_path: Path | None = None
    # Where each scored window's reconstruction (the denoised readings) is published, sensor wire format (None: off).
    denoised_topic: str | None = None
    # Samples further apart than this many sampling periods are a gap: no window spans it (pipeline/sensors/windows.py).
    sensor_gap_periods: float = Field(default=3.0, gt=1)
    prefer_gpu: bool = True
    # TensorRT on top of CUDA, when this onnxruntime build has it and its libraries load (else CUDA, then the CPU; the
    # log says which and why). The first start builds an engine per model file (minutes); the cache keeps them for
    # the next start and reloads (None: rebuilt at every start). An fp16 model lets TensorRT pick fp16 kernels.
    tensorrt: bool = False
    tensorrt_cache_dir: Path | None = None
    batch_size: int = Field(default=32, ge=1, le=4096)
    # onnxruntime's threads per inference of the image model (0: one per core) and whether they busy-wait between
    # operators. Off by default: the decode pool, the writer and the Kafka client share the cores with them, and the
    # cycles a waiting thread spins are theirs (docs/BENCHMARKS.md: the fast stand-in end to end 0.25-0.49 of raw
    # scoring with spinning, 0.41-0.80 without; the default model scores alone about as fast either way).
    inference_threads: int = Field(default=0, ge=0, le=256)
    inference_spinning: bool = False
    # OpenCV releases the GIL while decoding: a few threads pay on machines with spare cores.
    decode_threads: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1, le=64)
    store_images: bool = True
    # Where a defect's frame, overlay and restored PNG go: a local folder or any fsspec URL (s3://bucket/prefix,
    # gcs://, ...). Always on: rows hold the objects' URIs; rows written before the store still hold blobs.
    frame_store_url: str = "./lineguard-frames"
    # Objects of defects detected longer ago than this are deleted and their references cleared (None: keep all).
    frame_retention_days: float | None = Field(default=None, gt=0)
    count_interval_s: int = Field(default=60, ge=1)
    db_retry_initial_s: float = 0.5
    db_retry_max_s: float = 10.0
    model_reload_check_s: float = 5.0
    # "registry": also follow the active version of the serving model's name in the model registry (`lineguard models
    # promote`), read every model_reload_check_s on a thread of its own (pipeline/registry/watch.py); "file": the file.
    model_source: Literal["file", "registry"] = "file"

    # Alerts
    alert_score: float | None = None  # None: every defect is alert-worthy
    burst_defects: int = Field(default=3, ge=1)
    burst_window_frames: int = Field(default=20, ge=1)
    alert_cooldown_s: float = Field(default=60.0, ge=0)
    # false-alarm drift: a camera's flag rate over about this many frames, alerting above factor x the model's budget
    drift_window_frames: int = Field(default=500, ge=10)
    drift_factor: float = Field(default=5.0, gt=1)
    alert_log: bool = True
    alert_kafka: bool = False
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = 5.0
    # Receivers reject a signed webhook whose timestamp is further than this from their clock (replays).
    webhook_max_age_s: float = Field(default=300.0, gt=0)
    alert_retry_initial_s: float = 1.0
    alert_retry_max_s: float = 60.0
    alert_poll_s: float = 0.5

    # Observability
    metrics_port: int | None = None
    # Loopback by default; a container or pod sets 0.0.0.0 so that Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"

    # Review page (`lineguard review serve`)
    # Every write (verdicts, labels, notes) must carry a token as `Authorization: Bearer`; without one the page only
    # starts with --read-only. review_token is one shared token (verdicts recorded as by "shared"); review_tokens
    # binds a token to each reviewer's name (environment: JSON {"ana": "...", "ben": "..."}), which is what a
    # verdict records. Tokens: 32+ random characters, 128+ bits, no placeholder (`lineguard review token`).
    review_token: SecretStr | None = None
    review_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    review_host: str = "127.0.0.1"
    review_port: int = Field(default=8080, ge=0, le=65535)
    # The path a reverse proxy serves the page under (e.g. /review); every link and fetch starts with it.
    review_root_path: str = ""
    # Defect classes, in the order keys 1-9 apply them (environment: a JSON list).
    review_labels: list[str] = Field(
        default_factory=lambda: ["scratch", "dent", "stain", "crack", "missing-part", "other"],
        min_length=1,
        max_length=9,
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        # A short HMAC key can be guessed offline from one signed alert; empty means unsigned (warned at start-up).
        if self.webhook_secret and len(self.webhook_secret.get_secret_value()) < MIN_WEBHOOK_SECRET_CHARS:
            raise ValueError(f"webhook_secret must have at least {MIN_WEBHOOK_SECRET_CHARS} characters")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def decode_memory_bound_bytes(self) -> int:
        """Most memory the decode threads hold at once: each decoding a largest allowed frame (at most 3 bytes a
        pixel, refused from the image header otherwise) and converting it (one more copy at most)."""
        return self.decode_threads * self.max_frame_pixels * 3 * 2

    @property
    def memory_bound_bytes(self) -> int:
        """Memory the consumer may take above its steady state, whatever it is sent: frames being decoded, the
        polled batch whose frames decode while the one before it is scored (at most `batch_size` records of
        `max_frame_bytes`), and records fetched ahead of the loop (Kafka's fetch buffer)."""
        prefetched = self.batch_size * self.max_frame_bytes
        return self.decode_memory_bound_bytes + prefetched + int(self.consumer_options()["fetch_max_bytes"])

    @property
    def max_message_bytes(self) -> int:
        """Largest Kafka record the runtime produces or fetches: a full frame plus headers."""
        return self.max_frame_bytes + HEADER_HEADROOM_BYTES

    def kafka_common(self) -> dict[str, Any]:
        """Connection options shared by every kafka-python client (security passed straight through)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_plain_username
            if self.sasl_plain_password is not None:
                options["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                options[name] = str(value)
        return options

    def producer_options(self) -> dict[str, Any]:
        return {**self.kafka_common(), "max_request_size": self.max_message_bytes}

    def consumer_options(self) -> dict[str, Any]:
        return {
            **self.kafka_common(),
            "max_partition_fetch_bytes": self.max_message_bytes,
            "fetch_max_bytes": max(52_428_800, self.max_message_bytes),
        }


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Non-None overrides (e.g. CLI options) win over LINEGUARD_* variables, which win over the KEY=value file."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if config_file is not None:
        return Settings(_env_file=str(config_file), **given)  # type: ignore[call-arg]
    return Settings(**given)
