"""Fixtures for the line runtime tests: a real broker, real SQLite and PostgreSQL databases, a tiny real model."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # the package is not necessarily pip-installed in the dev tree

from model_factory import build_tiny_model  # noqa: E402

from pipeline.settings import Settings  # noqa: E402

# Small group timings: a new consumer group's first join waits about max_poll_interval_ms on Tansu.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10000}


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


CONSUME = [sys.executable, "-m", "pipeline", "consume"]  # `lineguard consume` in a child process
# What tests set through `line_settings` and a child consumer must see too.
CHILD_SETTINGS = (
    "bootstrap_servers",
    "model_path",
    "frames_topic",
    "dlq_topic",
    "alerts_topic",
    "group_id",
    "batch_size",
    "max_frame_bytes",
    "max_frame_pixels",
    "decode_threads",
    "frame_store_url",
    "alert_log",
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "max_poll_interval_ms",
)


def consumer_env(settings: Settings) -> dict[str, str]:
    """`subprocess_env` plus `settings` as LINEGUARD_* variables, for a consumer run with `CONSUME`."""
    env = subprocess_env() | {"LINEGUARD_DATABASE_URL": settings.db_url}
    for name in CHILD_SETTINGS:
        value = getattr(settings, name)
        if value is not None:
            env[f"LINEGUARD_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@pytest.fixture(autouse=True)
def frames_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's frame store (settings and child processes read LINEGUARD_*) is its own temporary folder, never
    ./lineguard-frames in the working tree."""
    folder = tmp_path / "frames"
    monkeypatch.setenv("LINEGUARD_FRAME_STORE_URL", str(folder))
    return folder


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The embedded broker, or any Kafka named by LINEGUARD_TEST_BOOTSTRAP (e.g. Apache Kafka)."""
    external = os.environ.get("LINEGUARD_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    from pipeline.dev.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server (pgserver wheel) in a temporary folder; yields its libpq URI."""
    pgserver = pytest.importorskip("pgserver", reason="pip install pgserver 'psycopg[binary]'")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def new_pg_database(server_uri: str) -> str:
    """A fresh database on the server; returns its SQLAlchemy URL."""
    import psycopg

    name = f"lg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = server_uri.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}".replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lineguard.db'}"
    return new_pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def line_settings(bootstrap: str, db_url: str, model: Path | None, **overrides: object) -> Settings:
    """Settings with topics and group unique to one test, fast group timings, no alert log noise."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "frames_topic": f"frames-{tag}",
        "dlq_topic": f"dlq-{tag}",
        "alerts_topic": f"alerts-{tag}",
        "group_id": f"group-{tag}",
        "database_url": db_url,
        "model_path": model,
        "alert_log": False,
        "alert_cooldown_s": 0.0,
        "batch_size": 16,
        **FAST_GROUP,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def make_topics(settings: Settings, partitions: int = 1) -> None:
    from pipeline.dev.broker import ensure_topics

    ensure_topics(settings.kafka_common(), [settings.frames_topic], partitions)
    ensure_topics(settings.kafka_common(), [settings.dlq_topic, settings.alerts_topic], 1)


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas through the deprecated importlib.resources API.
    config.addinivalue_line("filterwarnings", r"ignore:(read|open)_text is deprecated:DeprecationWarning")
