"""The faults: PostgreSQL stopped and started, the webhook down, each when the stream reaches its point."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from bench.chaos.plan import ChaosPlan
from pipeline.dev.broker import free_port
from pipeline.dev.receiver import AlertReceiver
from pipeline.storage.tables import SourceOffset

# Settings require 32+ characters since 761e241 (the chaos run had kept a shorter one and stopped at start).
SECRET = "chaos-run-webhook-secret-0123456789"

log = logging.getLogger("chaos")


class Clock:
    """Seconds since the chaos phase began, and a log of what happened when."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return round(time.monotonic() - self.start, 2)

    def note(self, event: str, **data: Any) -> None:
        with self._lock:
            self.events.append({"t": self.now(), "event": event, **data})
        log.info("%7.2fs %s %s", self.now(), event, data or "")


class Postgres:
    """A pgserver PostgreSQL stopped and started with its own pg_ctl, on the same data folder and socket."""

    def __init__(self, root: Path) -> None:
        import pgserver

        self.pgdata = root / "pgdata"
        # cleanup_mode=None: after our restarts pgserver's handle names a dead postmaster; we stop it ourselves.
        self.server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.uri = self.server.get_uri()
        self.down_since: float | None = None  # monotonic time of the last stop, while it is down
        self.outages: list[tuple[float, float | None]] = []  # (stopped, started again) in monotonic time
        # Records done that trigger the next outage: from there on no threshold kill, so that the outage meets
        # a running consumer (it waits for the next batch to land) and the kill falls inside it.
        self.next_at: int | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def was_down(self, since: float) -> bool:
        """Whether it has been down at any moment since `since` (monotonic)."""
        return any(end is None or end >= since for _, end in self.outages)

    def _pg_ctl(self, args: list[str]) -> None:
        import pgserver

        pgserver.pg_ctl(args, pgdata=self.pgdata, user=self.server.system_user, timeout=60)

    def stop(self, mode: str) -> None:
        self.down_since = time.monotonic()
        self.outages.append((self.down_since, None))
        self._pg_ctl(["-w", "-m", mode, "stop"])

    def start(self) -> None:
        # The options pgserver starts it with: no TCP listener, the socket in the same folder (same URI).
        log_file = str(self.pgdata / "log")
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log_file, "start"])
        self.outages[-1] = (self.outages[-1][0], time.monotonic())
        self.down_since = None

    def new_database(self) -> str:
        """A fresh database; its SQLAlchemy URL (psycopg 3)."""
        import psycopg

        name = f"chaos_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, query = self.uri.partition("?")
        return f"{base.rsplit('/', 1)[0]}/{name}?{query}".replace("postgresql://", "postgresql+psycopg://", 1)

    def close(self) -> None:
        if not self.down:
            self._pg_ctl(["-w", "-m", "fast", "stop"])
            self.down_since = time.monotonic()


class Webhook:
    """The alert receiver on one fixed port; `down` stops it, `up` starts a new one on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/alerts"
        self._receivers: list[AlertReceiver] = []
        self._current: AlertReceiver | None = None
        self.up()

    def up(self) -> None:
        self._current = AlertReceiver(port=self.port, secret=SECRET).start()
        self._receivers.append(self._current)

    def down(self) -> None:
        if self._current is not None:
            self._current.stop()
            self._current = None

    @property
    def is_up(self) -> bool:
        return self._current is not None

    @property
    def received_ids(self) -> list[int]:
        return [int(a["alert_id"]) for r in self._receivers for a in r.alerts]

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self._receivers)


class Progress:
    """Records done by the chaos group (the offsets the database holds); the last known value while it is down."""

    def __init__(self, url: str, group_id: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)  # no pooled connection survives a restart anyway
        self.group_id = group_id
        self.last = 0

    def read(self) -> tuple[int, bool]:
        try:
            with self.engine.connect() as conn:
                value = conn.scalar(
                    select(func.coalesce(func.sum(SourceOffset.next_offset), 0)).where(
                        SourceOffset.group_id == self.group_id
                    )
                )
        except Exception:  # the database is down: that is the point of the exercise
            return self.last, False
        self.last = int(value or 0)
        return self.last, True


def chaos_events(
    plan: ChaosPlan,
    frames: int,
    progress: Progress,
    pg: Postgres,
    webhook: Webhook,
    clock: Clock,
    done: threading.Event,
) -> None:
    """PostgreSQL outages and the webhook outage, each triggered when the stream reaches its point."""
    pg_next, pg_up_at, pg_armed_at, webhook_up_at = 0, None, None, None
    webhook_state = "waiting"
    pg.next_at = plan.pg_at[0] if plan.pg_at else None
    while not done.is_set():
        value, _ = progress.read()
        now = time.monotonic()
        if webhook_state == "waiting" and value >= plan.webhook_at:
            webhook.down()
            webhook_state, webhook_up_at = "down", now + plan.webhook_down_s
            clock.note("webhook down", records_done=value)
        elif webhook_state == "down" and webhook_up_at is not None and now >= webhook_up_at:
            webhook.up()
            webhook_state = "done"
            clock.note("webhook up")
        if pg_up_at is None and pg_armed_at is None and pg_next < len(plan.pg_at) and value >= plan.pg_at[pg_next]:
            pg_armed_at = value
        elif pg_armed_at is not None and (value > pg_armed_at or value >= frames):
            # Stop it just after a batch landed, so that a running consumer's writer meets the outage mid-stream
            # (not only consumers that start while it is down).
            pg.stop(plan.pg_mode[pg_next])
            pg_armed_at = None
            pg_up_at = now + plan.pg_down_s[pg_next]
            clock.note("postgres stopped", mode=plan.pg_mode[pg_next], records_done=value)
        elif pg_up_at is not None and now >= pg_up_at:
            pg.start()
            pg_up_at = None
            pg_next += 1
            pg.next_at = plan.pg_at[pg_next] if pg_next < len(plan.pg_at) else None
            clock.note("postgres started")
        if webhook_state == "done" and pg_next == len(plan.pg_at):
            return
        time.sleep(0.2)


def outage_due(pg: Postgres, value: int) -> bool:
    return pg.down or (pg.next_at is not None and value >= pg.next_at)
