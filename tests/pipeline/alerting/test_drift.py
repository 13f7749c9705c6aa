"""False-alarm drift: a camera whose flag rate climbs above the model's budget raises one alert, and its running
state survives a restart in the database."""

from __future__ import annotations

import pytest
from helpers import frame_result

from pipeline.alerting.rules import (
    FALSE_ALARM_DRIFT,
    AlertRuleConfig,
    AlertRules,
    CameraState,
    DriftReference,
    DriftState,
)
from pipeline.alerting.state import load_rule_state, save_rule_state
from pipeline.storage.engine import open_database

REFERENCE = DriftReference(budget=0.01, normal_median=0.01, normal_std=0.005)
CONFIG = AlertRuleConfig(None, 10_000, 10_000, cooldown_s=0, drift_window_frames=100, drift_factor=5.0)


def drift_alerts(frames: list, cameras: dict[str, CameraState]) -> list:
    return [a for a in AlertRules(CONFIG).evaluate(frames, "1", cameras, REFERENCE) if a.rule == FALSE_ALARM_DRIFT]


def test_a_line_within_its_budget_raises_no_drift_alert() -> None:
    cameras: dict[str, CameraState] = {}
    # 1 flag in 200 frames: half the budget
    assert drift_alerts([frame_result(i, i == 50) for i in range(200)], cameras) == []
    assert cameras["cam-1"].drift.flag_rate < 0.05


def test_a_camera_flagging_far_above_budget_raises_one_alert_naming_the_rates() -> None:
    cameras: dict[str, CameraState] = {}
    # after a quiet start the lighting changes: every tenth frame is flagged, normal scores rise by 3 std
    quiet = [frame_result(i, False, "cam-2") for i in range(100)]
    drifted = [frame_result(100 + i, i % 10 == 0, "cam-2", None if i % 10 == 0 else 0.025) for i in range(400)]
    alerts = drift_alerts(quiet + drifted, cameras)
    assert len(alerts) == 1  # one alert per episode, not one per frame, even without a cooldown
    drift = alerts[0].payload["drift"]
    assert drift["flag_rate"] > 5 * REFERENCE.budget and drift["false_alarm_budget"] == 0.01
    assert drift["normal_score_shift_std"] > 0.5  # already moving when the alert fires
    assert cameras["cam-2"].drift.normal_shift == pytest.approx(3.0, abs=0.2)
    assert alerts[0].camera_id == "cam-2"


def test_models_without_a_budget_track_no_drift() -> None:
    cameras: dict[str, CameraState] = {}
    alerts = AlertRules(CONFIG).evaluate([frame_result(i, True) for i in range(300)], "1", cameras)
    assert FALSE_ALARM_DRIFT not in {a.rule for a in alerts}
    assert cameras["cam-1"].drift.frames == 0


def test_a_camera_back_under_budget_can_alert_again() -> None:
    cameras: dict[str, CameraState] = {}
    drifted = [frame_result(i, i % 5 == 0) for i in range(200)]
    recovered = [frame_result(200 + i, False) for i in range(300)]
    again = [frame_result(500 + i, i % 5 == 0) for i in range(200)]
    assert len(drift_alerts(drifted + recovered + again, cameras)) == 2


@pytest.mark.parametrize("stored", [None, {"frames": "x"}, {"frames": 3, "flag_rate": float("nan")}, [], "drift"])
def test_an_unreadable_stored_drift_state_starts_afresh(stored: object) -> None:
    assert DriftState.from_json(stored) == DriftState()


@pytest.mark.integration
def test_drift_state_survives_a_restart(db_url: str) -> None:
    _, sessions = open_database(db_url)
    with sessions() as session, session.begin():
        cameras = load_rule_state(session, {"cam-1"})
        AlertRules(CONFIG).evaluate([frame_result(i, i % 4 == 0) for i in range(40)], "1", cameras, REFERENCE)
        save_rule_state(session, cameras)
    with sessions() as session:
        restored = load_rule_state(session, {"cam-1"})["cam-1"].drift
    assert restored.frames == 40 and restored.flag_rate == pytest.approx(0.25)
