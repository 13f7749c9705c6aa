"""Settings precedence: defaults < LINEGUARD_* environment < settings file < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import HEADER_HEADROOM_BYTES, load_settings


def test_precedence_and_kafka_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEGUARD_BATCH_SIZE", "8")
    monkeypatch.setenv("LINEGUARD_GROUP_ID", "from-env")
    assert load_settings().batch_size == 8
    config = tmp_path / "line.env"
    config.write_text(
        "LINEGUARD_BATCH_SIZE=12\nLINEGUARD_DATABASE_URL=sqlite:///x.db\nLINEGUARD_SASL_MECHANISM=PLAIN\n"
    )
    settings = load_settings(config, batch_size=None, database_url="sqlite:///y.db")
    assert settings.group_id == "from-env"  # the environment outranks the file
    assert settings.batch_size == 8
    assert settings.db_url == "sqlite:///y.db"  # an explicit override outranks everything
    assert settings.kafka_common()["sasl_mechanism"] == "PLAIN"
    assert settings.producer_options()["max_request_size"] == settings.max_frame_bytes + HEADER_HEADROOM_BYTES
    assert settings.consumer_options()["max_partition_fetch_bytes"] == settings.max_message_bytes


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        load_settings(batch_size=0)
    with pytest.raises(ValueError, match="heartbeat_interval_ms"):
        load_settings(heartbeat_interval_ms=20_000, session_timeout_ms=10_000)


def test_webhook_secret_has_a_minimum_length_and_reviewer_tokens_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="webhook_secret must have at least 32 characters"):
        load_settings(webhook_secret="short")
    assert load_settings(webhook_secret="").webhook_secret is not None  # empty: unsigned, warned about at start-up
    monkeypatch.setenv("LINEGUARD_REVIEW_TOKENS", '{"ana": "a-token", "ben": "b-token"}')
    tokens = load_settings().review_tokens
    assert {name: token.get_secret_value() for name, token in tokens.items()} == {"ana": "a-token", "ben": "b-token"}
    assert "a-token" not in repr(load_settings())
