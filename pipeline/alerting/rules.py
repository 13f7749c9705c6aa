"""Alert rules over frame verdicts: a defect above the alert score, a burst of K defects in N frames per camera.

Cooldown and deduplication are per camera and rule. The state (each camera's recent verdicts, when each rule
last fired) is loaded from and saved to the database inside the batch transaction (pipeline/alerting/state.py):
it survives restarts and rebalances, and a transaction that fails and is retried does not count frames twice.
Cooldown runs on detection time, the consumer's clock: a camera stamping its frames in year 9999 cannot mute itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.results import FrameResult, RaisedAlert

HIGH_SCORE = "high_score"
BURST = "burst"


@dataclass(frozen=True)
class AlertRuleConfig:
    alert_score: float | None  # None: any defect
    burst_defects: int
    burst_window_frames: int
    cooldown_s: float


@dataclass
class CameraState:
    """One camera's rule state: its last verdicts (the burst window) and when each rule last fired."""

    window: deque[bool] = field(default_factory=deque)
    last_alert: dict[str, datetime] = field(default_factory=dict)


class AlertRules:
    """Evaluates rules frame by frame, in Kafka order per camera."""

    def __init__(self, config: AlertRuleConfig) -> None:
        self.config = config

    def evaluate(
        self, results: list[FrameResult], model_version: str, cameras: dict[str, CameraState]
    ) -> list[RaisedAlert]:
        """Alerts raised by `results`; `cameras` (state by camera id) is updated in place."""
        alerts: list[RaisedAlert] = []
        for result in results:
            state = cameras.setdefault(result.camera_id, CameraState())
            state.window.append(result.is_defect)
            if len(state.window) > self.config.burst_window_frames:
                state.window.popleft()
            if not result.is_defect:
                continue
            limit = self.config.alert_score
            if (limit is None or result.score >= limit) and self._cooled(state, HIGH_SCORE, result.detected_at):
                alerts.append(self._alert(HIGH_SCORE, result, model_version, state))
            if sum(state.window) >= self.config.burst_defects and self._cooled(state, BURST, result.detected_at):
                alert = self._alert(BURST, result, model_version, state)
                alert.payload["burst"] = {"defects": sum(state.window), "frames": len(state.window)}
                alerts.append(alert)
                state.window.clear()  # the next burst needs K new defects
        return alerts

    def _cooled(self, state: CameraState, rule: str, at: datetime) -> bool:
        last = state.last_alert.get(rule)
        return last is None or (at - last).total_seconds() >= self.config.cooldown_s

    def _alert(self, rule: str, result: FrameResult, model_version: str, state: CameraState) -> RaisedAlert:
        state.last_alert[rule] = result.detected_at
        source = result.source
        payload: dict[str, Any] = {
            "rule": rule,
            "camera_id": result.camera_id,
            "line_id": result.line_id,
            "captured_at": result.captured_at.isoformat(),
            "score": round(result.score, 6),
            "threshold": result.threshold,
            "model_version": model_version,
            "regions": result.regions,
            "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        }
        return RaisedAlert(
            dedupe_key=f"{rule}:{source.topic}:{source.partition}:{source.offset}",
            rule=rule,
            camera_id=result.camera_id,
            line_id=result.line_id,
            created_at=result.detected_at,
            payload=payload,
        )
