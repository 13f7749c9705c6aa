"""Alert rules and delivery from the outbox to a real local HTTP receiver (HMAC-signed, retried until it is up)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from helpers import frame_result
from sqlalchemy import select

from pipeline.alerting.channels import LogChannel, WebhookChannel
from pipeline.alerting.outbox import deliver_due, flush_outbox
from pipeline.alerting.rules import AlertRuleConfig, AlertRules, CameraState
from pipeline.alerting.signing import sign, verify_signature
from pipeline.alerting.state import load_rule_state, save_rule_state
from pipeline.dev.broker import free_port
from pipeline.dev.receiver import AlertReceiver
from pipeline.results import FrameResult
from pipeline.settings import Settings
from pipeline.storage.engine import open_database
from pipeline.storage.store import ModelInfo, write_batch
from pipeline.storage.tables import AlertDelivery


def test_burst_rule_counts_per_camera_and_cooldown_suppresses() -> None:
    rules = AlertRules(AlertRuleConfig(alert_score=0.9, burst_defects=2, burst_window_frames=3, cooldown_s=0))
    frames = [
        frame_result(0, True, "a"),
        frame_result(1, True, "b"),
        frame_result(2, False, "a"),
        frame_result(3, True, "a"),
    ]
    cameras: dict[str, CameraState] = {}
    assert [(a.rule, a.camera_id) for a in rules.evaluate(frames, "1", cameras)] == [("burst", "a")]
    # Defects far apart (more than the window) never make a burst.
    spaced = [frame_result(10 + i, i % 4 == 0, "c") for i in range(12)]
    assert rules.evaluate(spaced, "1", cameras) == []
    cooled = AlertRules(AlertRuleConfig(alert_score=None, burst_defects=99, burst_window_frames=99, cooldown_s=10))
    alerts = cooled.evaluate([frame_result(i, True) for i in range(25)], "1", {})
    assert [a.payload["source"]["offset"] for a in alerts] == [0, 10, 20]


def test_cooldown_runs_on_detection_time_not_the_camera_clock() -> None:
    rules = AlertRules(AlertRuleConfig(alert_score=None, burst_defects=99, burst_window_frames=99, cooldown_s=10))
    far_future = replace(frame_result(0, True), captured_at=datetime(9999, 1, 1, tzinfo=UTC))
    later = frame_result(30, True)  # detected 30 s later: past the cooldown, whatever the first frame claimed
    assert [a.payload["source"]["offset"] for a in rules.evaluate([far_future, later], "1", {})] == [0, 30]


@pytest.mark.integration
def test_rule_state_survives_a_restart(db_url: str) -> None:
    config = AlertRuleConfig(alert_score=None, burst_defects=3, burst_window_frames=10, cooldown_s=60)
    _, sessions = open_database(db_url)

    def batch(rules: AlertRules, frames: list[FrameResult]) -> list[str]:
        with sessions() as session, session.begin():
            cameras = load_rule_state(session, {f.camera_id for f in frames})
            alerts = rules.evaluate(frames, "1", cameras)
            save_rule_state(session, cameras)
        return [a.rule for a in alerts]

    assert batch(AlertRules(config), [frame_result(0, True), frame_result(1, True)]) == ["high_score"]
    # A new process: the window still holds two defects, and the high-score alert 2 s ago still cools down.
    assert batch(AlertRules(config), [frame_result(2, True)]) == ["burst"]
    with sessions() as session:
        assert load_rule_state(session, {"cam-1"})["cam-1"].window == deque()  # a burst empties the window


def test_signature_round_trip() -> None:
    signature = sign("s3cret", "1700000000", b'{"a": 1}')
    now = 1_700_000_000  # the freshness window has its own test (test_webhook.py)
    assert verify_signature("s3cret", "1700000000", b'{"a": 1}', signature, now=now)
    assert not verify_signature("s3cret", "1700000001", b'{"a": 1}', signature, now=now)
    assert not verify_signature("other", "1700000000", b'{"a": 1}', signature, now=now)


@pytest.mark.integration
def test_webhook_down_then_up_delivers_every_alert_once(db_url: str) -> None:
    _, sessions = open_database(db_url)
    rules = AlertRules(AlertRuleConfig(alert_score=None, burst_defects=99, burst_window_frames=99, cooldown_s=0))
    frames = [frame_result(i, i % 2 == 0) for i in range(10)]
    with sessions() as session, session.begin():
        alerts = rules.evaluate(frames, "1", {})
        write_batch(session, "g", frames, {("frames", 0): 10}, alerts, ["webhook", "log"], ModelInfo("m", "1"), 60)
    port = free_port()
    channels = [WebhookChannel(f"http://127.0.0.1:{port}/alerts", "s3cret", timeout_s=1.0), LogChannel()]

    delivered = deliver_due(sessions, channels, retry_initial_s=0.05, retry_max_s=0.2)
    assert delivered == 5  # the log channel; the webhook is down
    with sessions() as session:
        pending = session.scalars(select(AlertDelivery).where(AlertDelivery.status == "pending")).all()
        assert len(pending) == 5 and all(d.attempts == 1 and d.last_error for d in pending)

    with AlertReceiver(port=port, secret="s3cret") as receiver:
        deadline = time.monotonic() + 10
        while len(receiver.alerts) < 5 and time.monotonic() < deadline:
            deliver_due(sessions, channels, retry_initial_s=0.05, retry_max_s=0.2)
            time.sleep(0.05)
        for _ in range(3):  # later passes must not send anything again
            deliver_due(sessions, channels, retry_initial_s=0.05, retry_max_s=0.2)
    assert receiver.rejected == 0
    assert sorted(a["source"]["offset"] for a in receiver.alerts) == [0, 2, 4, 6, 8]
    assert len({a["alert_id"] for a in receiver.alerts}) == 5
    with sessions() as session:
        assert all(d.status == "delivered" for d in session.scalars(select(AlertDelivery)))


@pytest.mark.integration
def test_flush_outbox_after_the_consumer_stopped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'flush.db'}"
    _, sessions = open_database(url)
    rules = AlertRules(AlertRuleConfig(alert_score=None, burst_defects=99, burst_window_frames=99, cooldown_s=0))
    frames = [frame_result(i, True) for i in range(4)]
    with sessions() as session, session.begin():
        write_batch(
            session,
            "g",
            frames,
            {("frames", 0): 4},
            rules.evaluate(frames, "1", {}),
            ["webhook"],
            ModelInfo("m", "1"),
            60,
        )
    with AlertReceiver(secret="webhook-secret-for-tests-0123456789abcdef") as receiver:
        settings = Settings(
            database_url=url,
            webhook_url=receiver.url,
            webhook_secret="webhook-secret-for-tests-0123456789abcdef",
            alert_log=False,
        )
        assert flush_outbox(settings, timeout_s=10) == 4
        assert flush_outbox(settings, timeout_s=1) == 0
    assert len(receiver.alerts) == 4


@pytest.mark.integration
def test_receiver_rejects_a_bad_signature(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, sessions = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    rules = AlertRules(AlertRuleConfig(alert_score=None, burst_defects=99, burst_window_frames=99, cooldown_s=0))
    with sessions() as session, session.begin():
        frames = [frame_result(0, True)]
        alerts = rules.evaluate(frames, "1", {})
        write_batch(session, "g", frames, {("frames", 0): 1}, alerts, ["webhook"], ModelInfo("m", "1"), 60)
    with AlertReceiver(secret="right") as receiver:
        channel = WebhookChannel(receiver.url, "wrong", timeout_s=1.0)
        assert deliver_due(sessions, [channel], 0.05, 0.2) == 0
    assert receiver.rejected == 1 and receiver.alerts == []
