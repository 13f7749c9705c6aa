"""Database layer on SQLite and PostgreSQL: migrations match the models, a replayed batch writes nothing twice."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import T0, frame_result
from sqlalchemy import func, select, text

from pipeline.alerting.rules import AlertRuleConfig, AlertRules
from pipeline.alerting.state import load_rule_state, save_rule_state
from pipeline.errors import LineGuardError
from pipeline.results import FrameResult
from pipeline.storage.engine import DatabaseTimeouts, migrate, open_database
from pipeline.storage.review import list_defects, parse_duration, parse_since
from pipeline.storage.store import ModelInfo, fresh_results, write_batch
from pipeline.storage.tables import Alert, AlertDelivery, Base, Defect, InspectionCount, SourceOffset


def test_migrations_match_the_models(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)  # idempotent
    engine, _ = open_database(db_url, upgrade=False)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def write(sessions, results: list[FrameResult], rules: AlertRules) -> int:  # type: ignore[no-untyped-def]
    """One batch transaction as the writer runs it, rule state loaded and saved with the batch."""
    offsets = {("frames", 0): max(r.source.offset for r in results) + 1}
    with sessions() as session, session.begin():
        fresh = fresh_results(session, "g", results, offsets)
        cameras = load_rule_state(session, {r.camera_id for r in fresh})
        alerts = rules.evaluate(fresh, "1", cameras)
        write_batch(session, "g", fresh, offsets, alerts, ["webhook", "log"], ModelInfo("m", "1"), 60)
        save_rule_state(session, cameras)
    return len(fresh)


def test_replayed_batch_inserts_nothing_twice(db_url: str) -> None:
    _, sessions = open_database(db_url)
    rules = AlertRules(AlertRuleConfig(alert_score=0.4, burst_defects=2, burst_window_frames=5, cooldown_s=0))
    batch = [frame_result(0, False), frame_result(1, True), frame_result(2, True), frame_result(3, False)]
    assert write(sessions, batch, rules) == 4
    assert write(sessions, batch, rules) == 0  # replay after a crash before the Kafka commit
    assert write(sessions, [*batch, frame_result(4, True)], rules) == 1  # overlapping batch: only the new record
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Defect)) == 3
        counts = session.scalars(select(InspectionCount)).all()
        assert sum(c.frames for c in counts) == 5 and sum(c.defects for c in counts) == 3
        assert session.scalar(select(SourceOffset.next_offset)) == 5
        rules_seen = sorted(a.rule for a in session.scalars(select(Alert)))
        assert rules_seen == ["burst", "high_score", "high_score", "high_score"]
        assert session.scalar(select(func.count()).select_from(AlertDelivery)) == 8


def test_review_queries(db_url: str) -> None:
    _, sessions = open_database(db_url)
    rules = AlertRules(AlertRuleConfig(alert_score=None, burst_defects=99, burst_window_frames=99, cooldown_s=0))
    write(
        sessions,
        [frame_result(0, True, "a", 0.2), frame_result(1, True, "b", 0.9), frame_result(2, True, "a", 0.6)],
        rules,
    )
    with sessions() as session:
        assert [d.source_offset for d in list_defects(session)] == [2, 1, 0]
        assert [d.source_offset for d in list_defects(session, camera="a")] == [2, 0]
        assert [d.source_offset for d in list_defects(session, min_score=0.5)] == [2, 1]
        assert [d.source_offset for d in list_defects(session, since=T0 + timedelta(seconds=1))] == [2, 1]
        assert list_defects(session, status="confirmed") == []


def test_parse_since() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("2026-01-01T00:00", now) == datetime(2026, 1, 1, tzinfo=UTC)


def test_postgresql_sessions_carry_timeouts_and_the_sqlite_writer_takes_the_write_lock_at_begin(db_url: str) -> None:
    timeouts = DatabaseTimeouts(connect_s=3, statement_s=7.5, lock_s=2)
    engine, sessions = open_database(db_url, timeouts=timeouts, writer=True)
    with sessions() as session, session.begin():
        if engine.dialect.name == "postgresql":
            assert session.execute(text("SHOW statement_timeout")).scalar() == "7500ms"
            assert session.execute(text("SHOW lock_timeout")).scalar() == "2s"
        else:
            # BEGIN IMMEDIATE: a transaction that has only read holds the write lock already.
            session.execute(select(SourceOffset.next_offset)).all()
            other = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0.1)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
    engine.dispose()
    if db_url.startswith("sqlite"):  # a reader's transaction takes no lock until it writes
        reader, read_sessions = open_database(db_url, upgrade=False)
        with read_sessions() as session, session.begin():
            session.execute(select(SourceOffset.next_offset)).all()
            other = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0.1)
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            other.close()
        reader.dispose()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (" 7d ", timedelta(days=7)),
        ("0s", timedelta(0)),
        ("0.25d", timedelta(hours=6)),
    ],
)
def test_one_duration_syntax_with_decimals(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_since(text, now) == now - expected  # --since and the review page read the same syntax


@pytest.mark.parametrize("text", ["soon", "1.5", "h", "-1h", "1.h", "1e3s", "2 h", "1234567890d"])
def test_a_bad_duration_names_the_option_and_the_syntax(text: str) -> None:
    with pytest.raises(LineGuardError, match=r"--older-than .*use 90s, 30m, 2h or 7d"):
        parse_duration(text, "--older-than")
