"""Prometheus metrics of one consumer, in their own registry (several consumers can share a process in tests)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from pipeline.results import FrameResult, WindowResult


class CameraDrift(Protocol):
    """What the drift gauges show of a camera (alerting.rules.DriftState keeps it, with more)."""

    @property
    def flag_rate(self) -> float: ...

    @property
    def normal_shift(self) -> float: ...


class ConsumerMetrics:
    """Counters and gauges the consumer updates; frames/s is `rate(lineguard_frames_total[1m])`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.frames = Counter("lineguard_frames", "Frames scored", ["camera"], registry=self.registry)
        self.defects = Counter("lineguard_defects", "Frames judged defective", ["camera"], registry=self.registry)
        self.dlq = Counter("lineguard_dlq", "Records sent to the dead-letter topic", ["reason"], registry=self.registry)
        self.alerts = Counter("lineguard_alerts", "Alerts written to the outbox", ["rule"], registry=self.registry)
        self.condition_fallbacks = Counter(
            "lineguard_condition_fallbacks",
            "Frames a conditional model scored unconditionally: their condition is not in its vocabulary",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "lineguard_batch_seconds",
            "Poll-to-commit time of one batch",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.frame_latency = Histogram(
            "lineguard_frame_latency_seconds",
            "Capture-to-verdict time of a frame",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.lag = Gauge(
            "lineguard_consumer_lag",
            "Records behind the high watermark",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "lineguard_alert_outbox_pending",
            "Alert deliveries waiting in the outbox",
            ["channel"],
            registry=self.registry,
        )
        self.outbox_oldest = Gauge(
            "lineguard_alert_outbox_oldest_seconds",
            "Age of the oldest alert still waiting for delivery (0 when none)",
            ["channel"],
            registry=self.registry,
        )
        self.windows = Counter("lineguard_sensor_windows", "Sensor windows scored", ["device"], registry=self.registry)
        self.anomalies = Counter(
            "lineguard_sensor_anomalies", "Sensor windows above the threshold", ["device"], registry=self.registry
        )
        self.readings = Counter("lineguard_sensor_readings", "Sensor samples windowed", registry=self.registry)
        self.gaps = Counter("lineguard_sensor_gaps", "Gaps that restarted a device's window", registry=self.registry)
        self.db_retries = Counter("lineguard_db_retries", "Batch transactions retried", registry=self.registry)
        self.flag_rate = Gauge(
            "lineguard_camera_flag_rate",
            "Share of a camera's recent frames judged defective (running mean over the drift window)",
            ["camera"],
            registry=self.registry,
        )
        self.normal_shift = Gauge(
            "lineguard_camera_normal_score_shift",
            "How far the scores of a camera's frames judged normal sit from the model's normal median, in its std",
            ["camera"],
            registry=self.registry,
        )
        self.false_alarm_budget = Gauge(
            "lineguard_false_alarm_budget",
            "False alarms per normal frame the serving model allows",
            registry=self.registry,
        )
        self.model = Info("lineguard_model", "Serving model and execution provider", registry=self.registry)
        self._server: Any = None

    def observe(self, fresh: list[FrameResult], batch_seconds: float, lag: dict[tuple[str, int], int]) -> None:
        """Count a committed batch: its new frames and defects, its time, the lag it leaves behind."""
        # One increment per camera and batch, not per frame: the counters take a lock per call.
        for camera, count in Tally(result.camera_id for result in fresh).items():
            self.frames.labels(camera=camera).inc(count)
        for camera, count in Tally(result.camera_id for result in fresh if result.is_defect).items():
            self.defects.labels(camera=camera).inc(count)
        for result in fresh:
            self.frame_latency.observe(result.latency_ms / 1000.0)
        self.batch_seconds.observe(batch_seconds)
        for (topic, partition), behind in lag.items():
            self.lag.labels(topic=topic, partition=str(partition)).set(behind)

    def observe_sensors(self, windows: list[WindowResult], readings: int, gaps: int) -> None:
        """Count a committed batch's sensor part: its new windows and anomalies, the samples and gaps it read."""
        for window in windows:
            self.windows.labels(device=window.device_id).inc()
            if window.is_anomaly:
                self.anomalies.labels(device=window.device_id).inc()
        self.readings.inc(readings)
        self.gaps.inc(gaps)

    def observe_drift(self, drift: Mapping[str, CameraDrift], budget: float) -> None:
        """Each camera's drift as the batch transaction left it, next to the model's budget."""
        self.false_alarm_budget.set(budget)
        for camera, state in drift.items():
            self.flag_rate.labels(camera=camera).set(state.flag_rate)
            self.normal_shift.labels(camera=camera).set(state.normal_shift)

    def observe_outbox(self, channel: str, pending: int, oldest_s: float) -> None:
        """The alert backlog of one channel, as the dispatcher saw it after its last round."""
        self.outbox_pending.labels(channel=channel).set(pending)
        self.outbox_oldest.labels(channel=channel).set(oldest_s)

    def serving(self, name: str, version: str, provider: str) -> None:
        self.model.info({"name": name, "version": version, "provider": provider})

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose /metrics over HTTP on `port` (a daemon thread) until `close`."""
        self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
