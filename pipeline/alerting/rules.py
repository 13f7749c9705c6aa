"""Alert rules over frame verdicts: a defect above the alert score, a burst of K defects in N frames per camera, and
a camera whose flag rate drifts above the model's false-alarm budget.

Cooldown and deduplication are per camera and rule. The state (each camera's recent verdicts, when each rule
last fired) is loaded from and saved to the database inside the batch transaction (pipeline/alerting/state.py):
it survives restarts and rebalances, and a transaction that fails and is retried does not count frames twice.
Cooldown runs on detection time, the consumer's clock: a camera stamping its frames in year 9999 cannot mute itself.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.contract import ModelMetadata
from pipeline.results import FrameResult, RaisedAlert

HIGH_SCORE = "high_score"
BURST = "burst"
FALSE_ALARM_DRIFT = "false_alarm_drift"


@dataclass(frozen=True)
class AlertRuleConfig:
    alert_score: float | None  # None: any defect
    burst_defects: int
    burst_window_frames: int
    cooldown_s: float
    # drift: running means over about this many frames; an alert once the flag rate exceeds budget x factor
    drift_window_frames: int = 500
    drift_factor: float = 5.0


@dataclass(frozen=True)
class DriftReference:
    """What a model expects of normal frames: its false-alarm budget and the median and spread of normal scores."""

    budget: float
    normal_median: float
    normal_std: float

    @classmethod
    def of(cls, metadata: ModelMetadata) -> DriftReference | None:
        """None for a model calibrated without a budget (older files): nothing to compare with."""
        if metadata.false_alarm is None:
            return None
        stats = metadata.image_score_stats
        return cls(metadata.false_alarm.rate, stats.quantiles.get("0.5", stats.mean), max(stats.std, 1e-12))


@dataclass
class DriftState:
    """One camera's running view of its verdicts: share of frames flagged, and how far the scores of frames judged
    normal sit from the model's normal median (in its normal standard deviations). Means over the first frames,
    then exponential with a time constant of the drift window."""

    frames: int = 0
    flag_rate: float = 0.0
    normal_frames: int = 0
    normal_shift: float = 0.0
    drifting: bool = False  # alerted and not yet back under half the alert level: one alert per episode
    budget: float | None = None  # the serving model's false-alarm budget at the last update (for the review page)

    def add(self, result: FrameResult, reference: DriftReference, window: int) -> None:
        self.budget = reference.budget
        self.frames += 1
        self.flag_rate += (float(result.is_defect) - self.flag_rate) / min(self.frames, window)
        if not result.is_defect:
            self.normal_frames += 1
            shift = (result.score - reference.normal_median) / reference.normal_std
            self.normal_shift += (shift - self.normal_shift) / min(self.normal_frames, window)

    def to_json(self) -> dict[str, float | int | bool | None]:
        return {
            "frames": self.frames,
            "flag_rate": self.flag_rate,
            "normal_frames": self.normal_frames,
            "normal_shift": self.normal_shift,
            "drifting": self.drifting,
            "budget": self.budget,
        }

    @classmethod
    def from_json(cls, data: Any) -> DriftState:
        """A stored state, or a fresh one where the row holds none or something unreadable (it is relearnt)."""
        try:
            state = cls(int(data["frames"]), float(data["flag_rate"]), int(data["normal_frames"]))
            state.normal_shift = float(data["normal_shift"])
            state.drifting = data.get("drifting") is True
            budget = data.get("budget")
            state.budget = float(budget) if isinstance(budget, int | float) and 0 < budget < 1 else None
        except (KeyError, TypeError, ValueError):
            return cls()
        finite = all(map(math.isfinite, (state.flag_rate, state.normal_shift)))
        return state if finite and state.frames >= 0 and state.normal_frames >= 0 else cls()


@dataclass
class CameraState:
    """One camera's rule state: its last verdicts (the burst window), its drift and when each rule last fired."""

    window: deque[bool] = field(default_factory=deque)
    last_alert: dict[str, datetime] = field(default_factory=dict)
    drift: DriftState = field(default_factory=DriftState)


class AlertRules:
    """Evaluates rules frame by frame, in Kafka order per camera."""

    def __init__(self, config: AlertRuleConfig) -> None:
        self.config = config

    def evaluate(
        self,
        results: list[FrameResult],
        model_version: str,
        cameras: dict[str, CameraState],
        reference: DriftReference | None = None,
    ) -> list[RaisedAlert]:
        """Alerts raised by `results`; `cameras` (state by camera id) is updated in place. Drift is tracked
        against `reference` where the model has one."""
        alerts: list[RaisedAlert] = []
        for result in results:
            state = cameras.setdefault(result.camera_id, CameraState())
            if reference is not None:
                state.drift.add(result, reference, self.config.drift_window_frames)
                if self._starts_drifting(state, reference) and self._cooled(
                    state, FALSE_ALARM_DRIFT, result.detected_at
                ):
                    alerts.append(self._drift_alert(result, model_version, state, reference))
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

    def _starts_drifting(self, state: CameraState, reference: DriftReference) -> bool:
        """True once when the flag rate rises above the alert level; the episode ends below half of it."""
        drift = state.drift
        level = self.config.drift_factor * reference.budget
        if drift.drifting:
            drift.drifting = drift.flag_rate > level / 2
            return False
        drift.drifting = drift.frames >= self.config.drift_window_frames and drift.flag_rate > level
        return drift.drifting

    def _drift_alert(
        self, result: FrameResult, model_version: str, state: CameraState, reference: DriftReference
    ) -> RaisedAlert:
        alert = self._alert(FALSE_ALARM_DRIFT, result, model_version, state)
        alert.payload["drift"] = {
            "flag_rate": round(state.drift.flag_rate, 6),
            "false_alarm_budget": reference.budget,
            "normal_score_shift_std": round(state.drift.normal_shift, 3),
            "frames": state.drift.frames,
            # flagged frames are real defects or false alarms: either many defects, or the line changed
            # (lighting, parts, camera) and the model's normal no longer fits
            "meaning": "flag rate above the model's false-alarm budget: many real defects, or the line changed",
        }
        return alert

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
