"""Failure handling on the real broker: SIGKILL + restart, SIGTERM, database down then up, webhook down then up."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    CONSUME,
    REPO_ROOT,
    consumer_env,
    line_settings,
    make_topics,
    new_pg_database,
)
from helpers import ConsumerThread, committed_offset, db_totals, expected_frames, read_topic, wait_for
from model_factory import build_tiny_model, tiny_metadata
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import ProgrammingError

from pipeline.dev.broker import free_port
from pipeline.dev.receiver import AlertReceiver
from pipeline.dev.simulator import publish_frames
from pipeline.settings import Settings
from pipeline.storage.engine import migrate
from pipeline.storage.tables import AlertDelivery, Defect, ModelVersion, SourceOffset

pytestmark = pytest.mark.integration


def consumer_process(settings: Settings, tmp_path: Path, name: str, idle_exit: float | None) -> subprocess.Popen[bytes]:
    """`lineguard consume` in its own process, configured through LINEGUARD_* variables."""
    env = consumer_env(settings)
    command = list(CONSUME)
    if idle_exit is not None:
        command += ["--idle-exit", str(idle_exit)]
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps writing to it)
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stored_offset(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.scalar(select(func.max(SourceOffset.next_offset)))
    engine.dispose()
    return int(value or 0)


def defect_seqs(url: str) -> set[int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        seqs = set(conn.scalars(select(Defect.seq)))
    engine.dispose()
    return seqs


def test_sigkill_mid_stream_then_restart_loses_nothing_and_duplicates_nothing(
    bootstrap: str, db_url: str, tiny_model: Path, tmp_path: Path
) -> None:
    count, seed = 1200, 11
    settings = line_settings(bootstrap, db_url, tiny_model, batch_size=16)
    make_topics(settings)
    migrate(db_url)  # so the test can poll the tables before the consumer has started
    publish_frames(settings, count=count, rate=None, seed=seed, defect_rate=0.2)
    injected = {i for i, f in enumerate(expected_frames(seed, count, 0.2)) if f.ground_truth != "good"}

    first = consumer_process(settings, tmp_path, "first", idle_exit=None)
    try:
        wait_for(lambda: db_totals(db_url)[0] >= 150, timeout=90, every=0.02, what="first frames stored")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    frames_at_kill = db_totals(db_url)[0]
    assert frames_at_kill < count, "the consumer finished before the kill: raise the frame count"

    second = consumer_process(settings, tmp_path, "second", idle_exit=2.0)
    assert second.wait(120) == 0, (tmp_path / "second.log").read_text()[-3000:]
    frames, defects, distinct = db_totals(db_url)
    assert (frames, defects, distinct) == (count, len(injected), len(injected))
    assert defect_seqs(db_url) == injected
    assert committed_offset(settings) == count == stored_offset(db_url)


def test_sigterm_finishes_the_batch_and_commits(bootstrap: str, tmp_path: Path, tiny_model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'term.db'}"
    settings = line_settings(bootstrap, url, tiny_model, batch_size=16)
    make_topics(settings)
    migrate(url)
    publish_frames(settings, count=1200, rate=None, seed=2, defect_rate=0.1)
    process = consumer_process(settings, tmp_path, "term", idle_exit=None)
    try:
        wait_for(lambda: db_totals(url)[0] >= 100, timeout=90, every=0.02, what="frames stored")
    finally:
        process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, (tmp_path / "term.log").read_text()[-3000:]
    stored = stored_offset(url)
    assert stored == db_totals(url)[0] < 1200
    assert committed_offset(settings) == stored  # the last batch was written and committed before exiting


def test_database_down_then_up_waits_without_committing_then_catches_up(bootstrap: str, tmp_path: Path) -> None:
    """Also: a new model version arrives while the database is down; it serves once reloaded, and is recorded."""
    pgserver = pytest.importorskip("pgserver")
    pg_dir = tmp_path / "pg"
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    url = new_pg_database(server.get_uri())
    model = build_tiny_model(tmp_path / "serving.onnx", tiny_metadata(version="1"))
    settings = line_settings(
        bootstrap, url, model, db_retry_initial_s=0.2, db_retry_max_s=0.5, model_reload_check_s=0.2
    )
    make_topics(settings)
    migrate(url)
    consumer = ConsumerThread(settings).start()
    try:
        publish_frames(settings, count=40, rate=None, seed=4, defect_rate=0.25)
        wait_for(lambda: db_totals(url)[0] == 40, timeout=60, what="first 40 frames")
        wait_for(lambda: committed_offset(settings) == 40, timeout=10, what="commit of the first 40")

        server.cleanup()  # the database goes away
        staged = build_tiny_model(tmp_path / "v2.onnx", tiny_metadata(version="2"))
        os.replace(staged, model)  # and a new version arrives meanwhile: the reload must not need the database
        time.sleep(1.5)
        assert consumer.error is None
        publish_frames(settings, count=40, rate=None, seed=5, defect_rate=0.25)
        time.sleep(3)
        assert committed_offset(settings) == 40  # nothing committed while the database is down

        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
        wait_for(lambda: db_totals(url)[0] == 80, timeout=60, what="catch-up after the database returned")
        wait_for(lambda: committed_offset(settings) == 80, timeout=10, what="commit after catch-up")
        engine = create_engine(url)
        with engine.connect() as conn:
            versions = sorted(conn.scalars(select(ModelVersion.model_version)))
            later = set(conn.scalars(select(Defect.model_version).where(Defect.source_offset >= 40)))
        engine.dispose()
    finally:
        stats = consumer.stop()
        server.cleanup()
    injected = sum(f.ground_truth != "good" for s in (4, 5) for f in expected_frames(s, 40, 0.25))
    assert stats.frames == 80 and stats.defects == injected and stats.db_retries > 0
    assert versions == ["1", "2"] and later == {"2"}


def test_alerts_reach_the_webhook_once_after_it_comes_up_and_the_kafka_topic(
    bootstrap: str, tiny_model: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    port = free_port()
    settings = line_settings(
        bootstrap,
        url,
        tiny_model,
        webhook_url=f"http://127.0.0.1:{port}/alerts",
        webhook_secret="webhook-secret-for-tests-0123456789abcdef",
        webhook_timeout_s=1.0,
        alert_kafka=True,
        alert_poll_s=0.1,
        alert_retry_initial_s=0.1,
        alert_retry_max_s=0.4,
        burst_defects=1000,  # one alert per defect keeps the count exact
    )
    make_topics(settings)
    migrate(url)
    injected = sum(f.ground_truth != "good" for f in expected_frames(8, 60, 0.3))
    engine = create_engine(url)

    def webhook_attempts() -> list[int]:
        with engine.connect() as conn:
            return list(conn.scalars(select(AlertDelivery.attempts).where(AlertDelivery.channel == "webhook")))

    consumer = ConsumerThread(settings).start()
    try:
        publish_frames(settings, count=60, rate=None, seed=8, defect_rate=0.3)
        wait_for(
            lambda: len(webhook_attempts()) == injected and min(webhook_attempts()) >= 1,
            timeout=60,
            what="every webhook delivery tried while the receiver is down",
        )
        with AlertReceiver(port=port, secret="webhook-secret-for-tests-0123456789abcdef") as receiver:
            wait_for(lambda: len(receiver.alerts) >= injected, timeout=30, what="webhook deliveries")
            time.sleep(1.0)  # a duplicate would arrive now
    finally:
        consumer.stop()
        engine.dispose()
    assert receiver.rejected == 0
    ids = [a["alert_id"] for a in receiver.alerts]
    assert len(ids) == len(set(ids)) == injected
    on_topic = read_topic(settings, settings.alerts_topic, expected=injected)
    assert len(on_topic) == injected


def test_a_consumer_started_during_a_database_outage_waits_for_it(
    bootstrap: str, tiny_model: Path, tmp_path: Path
) -> None:
    pgserver = pytest.importorskip("pgserver")
    pg_dir = tmp_path / "pg"
    server = pgserver.get_server(pg_dir, cleanup_mode="stop")
    url = new_pg_database(server.get_uri())
    settings = line_settings(bootstrap, url, tiny_model, db_retry_initial_s=0.2, db_retry_max_s=0.5)
    make_topics(settings)
    server.cleanup()  # down before the consumer starts: it used to exit 1 from the migration, a crash loop
    consumer = ConsumerThread(settings).start()
    try:
        time.sleep(2)
        assert consumer.error is None and consumer.stats is None  # still waiting, not crashed
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
        publish_frames(settings, count=20, rate=None, seed=6, defect_rate=0.25)

        def stored() -> int:
            try:
                return db_totals(url)[0]
            except ProgrammingError:  # the consumer has not created its tables yet
                return 0

        wait_for(lambda: stored() == 20, timeout=60, what="frames once the database is up")
    finally:
        stats = consumer.stop()
        server.cleanup()
    assert stats.frames == 20
