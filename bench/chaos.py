"""Chaos run: SIGKILL the consumer at random points while PostgreSQL stops and starts and the webhook is down.

    python bench/chaos.py                 # 3000 frames, 20 kills, 2 PostgreSQL outages, webhook down 60 s
    python bench/chaos.py --quick         # a short smoke run: 400 frames, 4 kills, short outages

Frames go to a 2-partition topic on the embedded broker first (a backlog, so the consumer is busy when it
is killed). A clean run of the same code into SQLite (another group) is the reference. Then `lineguard
consume` runs as a child process against PostgreSQL (pgserver) and a webhook receiver (signed). Kill i
falls when the life has done a random number of records (the spacings of sorted uniform points over the
stream), or a random time into a PostgreSQL outage, or after a random life span (so that some land during
a group join), plus a random jitter; each life is then restarted. PostgreSQL is stopped twice (fast, then
immediate shutdown, each just after a batch landed so that a running writer meets it) for 5 to 15 s, and
the webhook is down for a minute, at random points of the stream. A child that exits by itself (e.g. it
cannot reach the database at start) is restarted and reported. After the last kill a life with
--idle-exit finishes the stream and the outbox is flushed. Then: the defects against the reference,
frame counts against the frames sent, every alert row against what the webhook received (distinct ids,
duplicates, missing), the DLQ and the committed offsets.

Prints a table and writes bench/results/chaos.json (chaos-quick.json for --quick). Exit code 1 when a
defect is lost or doubled, a frame counted twice or never, or an alert never delivered.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "pipeline"))  # the tiny real ONNX model of the tests

from model_factory import build_tiny_model  # noqa: E402
from sqlalchemy import create_engine, func, select  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from pipeline.alerting.outbox import flush_outbox  # noqa: E402
from pipeline.consumer import run_consumer  # noqa: E402
from pipeline.dev.broker import EmbeddedBroker, ensure_topics, free_port  # noqa: E402
from pipeline.dev.receiver import AlertReceiver  # noqa: E402
from pipeline.dev.simulator import encode_sim_frame, synthetic_frames  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.storage.engine import migrate  # noqa: E402
from pipeline.storage.tables import Alert, AlertDelivery, Defect, InspectionCount, SourceOffset  # noqa: E402

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10000}
PARTITIONS = 2
CAMERAS = ["cam-1", "cam-2"]  # camera i is sent to partition i
SECRET = "chaos-secret"
LIFE_DEADLINE_S = (10.0, 40.0)  # a life that has not reached its kill threshold by then is killed anyway
OUTAGE_KILL_S = (0.5, 4.0)  # a life that meets a database outage is killed this far into it
KILL_JITTER_S = 0.25
RESTART_DELAY_S = 1.0  # after a child exited by itself (e.g. it could not reach the database at start)
FINAL_STALL_S = 180.0  # the final life is killed (and reported) when it makes no progress for this long
CRASH_LOOP = 30  # this many exits in a row with the database up: the consumer cannot start, give up

log = logging.getLogger("chaos")


@dataclass(frozen=True)
class RunConfig:
    frames: int
    kills: int
    seed: int
    defect_rate: float
    batch_size: int
    pg_outages: int
    pg_down_s: tuple[float, float]
    webhook_down_s: float
    idle_exit_s: float


@dataclass(frozen=True)
class ChaosPlan:
    """Everything random about the run, drawn up front from the seed."""

    kill_at: list[int]  # kill i when this many records are done (and its life has stored a batch), ascending
    kill_deadline_s: list[float]  # or this many seconds into the life, whichever comes first
    kill_in_outage_s: list[float]  # or this many seconds into a PostgreSQL outage (its writer retrying)
    kill_jitter_s: list[float]  # then this much longer, so the kill lands anywhere in the batch cycle
    pg_at: list[int]  # records done that trigger PostgreSQL outage j
    pg_down_s: list[float]
    pg_mode: list[str]  # pg_ctl shutdown mode: fast (clients told) or immediate (a crash, recovery at start)
    webhook_at: int
    webhook_down_s: float


def draw_plan(config: RunConfig) -> ChaosPlan:
    rng = random.Random(config.seed)
    n = config.frames
    kill_at = sorted(int(rng.uniform(0.02, 0.95) * n) for _ in range(config.kills))
    outages = config.pg_outages
    # Outage j falls in its own slice of the stream, so that the outages never overlap.
    pg_at = [int(rng.uniform(0.15 + 0.7 * j / outages, 0.15 + 0.7 * (j + 0.5) / outages) * n) for j in range(outages)]
    return ChaosPlan(
        kill_at=kill_at,
        kill_deadline_s=[rng.uniform(*LIFE_DEADLINE_S) for _ in kill_at],
        kill_in_outage_s=[rng.uniform(*OUTAGE_KILL_S) for _ in kill_at],
        kill_jitter_s=[rng.uniform(0, KILL_JITTER_S) for _ in kill_at],
        pg_at=pg_at,
        pg_down_s=[rng.uniform(*config.pg_down_s) for _ in pg_at],
        pg_mode=["fast" if j % 2 == 0 else "immediate" for j in range(outages)],
        webhook_at=int(rng.uniform(0.05, 0.15) * n),
        webhook_down_s=config.webhook_down_s,
    )


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


def publish(settings: Settings, config: RunConfig) -> list[str]:
    """Frames from one seeded synthetic stream, alternating cameras and partitions; each frame's ground truth."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=5, batch_size=1 << 20)
    truth = []
    try:
        stream = synthetic_frames(config.seed, 256, config.defect_rate)
        for seq, frame in enumerate(itertools.islice(stream, config.frames)):
            partition = seq % PARTITIONS
            encoded = encode_sim_frame(frame, CAMERAS[partition], "line-1", seq)
            producer.send(
                settings.frames_topic,
                key=encoded.key,
                value=encoded.value,
                headers=encoded.headers,
                partition=partition,
            )
            truth.append(frame.ground_truth)
        producer.flush()
    finally:
        producer.close()
    return truth


def consumer_env(values: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update({f"LINEGUARD_{key.upper()}": str(value) for key, value in values.items()})
    return env


@dataclass
class Lives:
    """The consumer child processes: each life has its own log; kills, exits and restarts are recorded."""

    env: dict[str, str]
    logs: Path
    clock: Clock
    started: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)
    exits: list[dict[str, Any]] = field(default_factory=list)
    exits_in_a_row: int = 0  # with the database up, since the last kill

    def start(self, idle_exit: float | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        command = [sys.executable, "-m", "pipeline", "consume"]
        if idle_exit is not None:
            command += ["--idle-exit", str(idle_exit)]
        path = self.logs / f"life-{self.started:02d}.log"
        with open(path, "wb") as out:  # the child holds its own descriptor
            process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started += 1
        return process, path

    def exited(self, process: subprocess.Popen[bytes], path: Path, pg_down: bool) -> None:
        tail = path.read_text(errors="replace").splitlines()[-12:]
        self.clock.note("consumer exited", code=process.returncode, log=path.name, pg_down=pg_down)
        self.exits.append(
            {"t": self.clock.now(), "code": process.returncode, "log": path.name, "pg_down": pg_down, "tail": tail}
        )
        self.exits_in_a_row += not pg_down
        if self.exits_in_a_row >= CRASH_LOOP:
            raise RuntimeError(f"the consumer exited {CRASH_LOOP} times in a row; the last said:\n" + "\n".join(tail))


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


def _outage_due(pg: Postgres, value: int) -> bool:
    return pg.down or (pg.next_at is not None and value >= pg.next_at)


def kill_phase(
    plan: ChaosPlan, batch_size: int, lives: Lives, progress: Progress, pg: Postgres, webhook: Webhook
) -> None:
    """Start, wait for the kill point, SIGKILL, restart; a child that exits by itself is restarted and noted."""
    clock = lives.clock
    kill = 0
    while kill < len(plan.kill_at):
        process, path = lives.start()
        born, (value, db_up) = time.monotonic(), progress.read()
        deadline = born + plan.kill_deadline_s[kill]
        # A life stores at least one batch before a threshold kill, counted from its first reading (while the
        # database is down the last one may be stale).
        at_birth = value if db_up else None
        while process.poll() is None:
            value, db_up = progress.read()
            if at_birth is None and db_up:
                at_birth = value
            now, down_since = time.monotonic(), pg.down_since
            in_outage = down_since is not None and now - max(down_since, born) >= plan.kill_in_outage_s[kill]
            reached = (
                at_birth is not None
                and value >= max(plan.kill_at[kill], at_birth + batch_size)
                and not _outage_due(pg, value)
            )
            if reached or in_outage or now >= deadline:
                trigger = "threshold" if reached else "pg outage" if in_outage else "deadline"
                time.sleep(plan.kill_jitter_s[kill])
                if process.poll() is not None:
                    break
                if reached and _outage_due(pg, progress.read()[0]):
                    continue  # the outage came due during the jitter: it goes first
                process.send_signal(signal.SIGKILL)
                process.wait()
                kill += 1
                after, _ = progress.read()
                record = {
                    "kill": kill,
                    "t": clock.now(),
                    "trigger": trigger,
                    "life_s": round(time.monotonic() - born, 2),
                    "records_done": after,
                    "stored_in_life": after - at_birth if at_birth is not None else 0,
                    "pg_down": pg.down or not db_up,
                    "webhook_down": not webhook.is_up,
                    "log": path.name,
                }
                lives.kills.append(record)
                lives.exits_in_a_row = 0
                clock.note("SIGKILL", **{k: record[k] for k in ("kill", "trigger", "records_done", "pg_down")})
                break
            time.sleep(0.05)
        if process.returncode not in (None, -signal.SIGKILL):
            lives.exited(process, path, pg.was_down(born))
            time.sleep(RESTART_DELAY_S)


def final_phase(config: RunConfig, lives: Lives, progress: Progress, pg: Postgres) -> None:
    """Lives with --idle-exit until every record is done and one exits cleanly; a stalled one is killed."""
    while True:
        process, path = lives.start(idle_exit=config.idle_exit_s)
        born = time.monotonic()
        last_value, last_change = progress.read()[0], time.monotonic()
        while process.poll() is None:
            value, _ = progress.read()
            if value != last_value:
                last_value, last_change = value, time.monotonic()
            if time.monotonic() - last_change > FINAL_STALL_S:
                lives.clock.note("final life stalled: SIGKILL", records_done=value, log=path.name)
                process.send_signal(signal.SIGKILL)
                process.wait()
                lives.exits.append(
                    {"t": lives.clock.now(), "code": "stalled", "log": path.name, "pg_down": pg.was_down(born)}
                )
                break
            time.sleep(0.2)
        if process.returncode != 0:
            if process.returncode != -signal.SIGKILL:
                lives.exited(process, path, pg.was_down(born))
            time.sleep(RESTART_DELAY_S)
            continue
        done, _ = progress.read()
        lives.clock.note("final life exited", code=0, records_done=done, log=path.name)
        if done >= config.frames:
            return
        time.sleep(RESTART_DELAY_S)


def defect_keys(url: str) -> dict[tuple[int, int], dict[str, Any]]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(select(Defect.source_partition, Defect.source_offset, Defect.seq, Defect.score))
        keys = {(p, o): {"seq": s, "score": round(sc, 5)} for p, o, s, sc in rows}
    engine.dispose()
    return keys


def alert_keys(url: str) -> set[str]:
    """The alerts' dedupe keys (rule and source frame): equal sets mean the same alerts were raised."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        keys = set(conn.scalars(select(Alert.dedupe_key)))
    engine.dispose()
    return keys


def table_figures(url: str, group_id: str) -> dict[str, Any]:
    """Row counts and offsets the checks need, read in one connection."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        offsets = conn.execute(
            select(SourceOffset.partition, SourceOffset.next_offset).where(SourceOffset.group_id == group_id)
        )
        db_offsets = {int(p): int(o) for p, o in offsets}
        figures = {
            "defect_rows": conn.scalar(select(func.count()).select_from(Defect)),
            "counted_frames": conn.scalar(select(func.coalesce(func.sum(InspectionCount.frames), 0))),
            "counted_defects": conn.scalar(select(func.coalesce(func.sum(InspectionCount.defects), 0))),
            "alert_ids": sorted(conn.scalars(select(Alert.id))),
            "alerts_by_rule": dict(Counter(conn.scalars(select(Alert.rule)))),
            "deliveries_pending": conn.scalar(
                select(func.count()).select_from(AlertDelivery).where(AlertDelivery.status != "delivered")
            ),
            "delivery_attempts_max": conn.scalar(select(func.coalesce(func.max(AlertDelivery.attempts), 0))),
        }
    engine.dispose()
    return {k: int(v) if isinstance(v, int | float) else v for k, v in figures.items()} | {"db_offsets": db_offsets}


def read_back(settings: Settings, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """(records, last offset + 1) per partition, read from the beginning until the topic has been quiet 2 s.

    Read rather than asked: Tansu answers ListOffsets(latest) with the base offset of the last record batch
    plus one, not the log end (10 records sent in one batch read as end offset 1).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_options(), enable_auto_commit=False, group_id=None)
    found = dict.fromkeys(range(partitions), (0, 0))
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 2.0:
            for tp, records in consumer.poll(timeout_ms=200).items():
                count, end = found[tp.partition]
                found[tp.partition] = (count + len(records), max(end, records[-1].offset + 1))
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return found


def kafka_figures(settings: Settings) -> dict[str, Any]:
    """DLQ records, and the group's committed offsets against the end of each frames partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_options(), group_id=settings.group_id, enable_auto_commit=False)
    try:
        committed = {p: consumer.committed(TopicPartition(settings.frames_topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close(autocommit=False)
    frames = read_back(settings, settings.frames_topic, PARTITIONS)
    return {
        "dlq_records": read_back(settings, settings.dlq_topic, 1)[0][0],
        "end_offsets": {p: end for p, (_, end) in frames.items()},
        "committed_offsets": committed,
    }


def log_summary(logs: Path) -> dict[str, Any]:
    """What the children said: counts of the lines that matter, and the first few error lines."""
    patterns = {
        "db_unavailable_retries": "database unavailable",
        "offset_commit_failed": "offset commit failed",
        "stored_offsets_unreadable": "could not read stored offsets",
        "alert_send_failed": "via webhook failed",
        "outbox_unavailable": "alert outbox unavailable",
        "tracebacks": "Traceback (most recent call last)",
        "error_lines": " ERROR ",
    }
    counts = dict.fromkeys(patterns, 0)
    errors: list[str] = []
    for path in sorted(logs.glob("life-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            for name, needle in patterns.items():
                if needle in line:
                    counts[name] += 1
            if (" ERROR " in line or line.startswith(("sqlalchemy.", "psycopg."))) and len(errors) < 12:
                errors.append(f"{path.name}: {line[:300]}")
    return {"counts": counts, "error_excerpts": errors}


def verify(
    config: RunConfig,
    truth: list[str],
    ref: Reference,
    chaos_url: str,
    settings: Settings,
    webhook: Webhook,
) -> dict[str, Any]:
    reference, chaos = ref.defects, defect_keys(chaos_url)
    raised = alert_keys(chaos_url)
    figures = table_figures(chaos_url, settings.group_id)
    lost = sorted(set(reference) - set(chaos))
    extra = sorted(set(chaos) - set(reference))
    received = webhook.received_ids
    distinct = set(received)
    alert_ids = set(figures.pop("alert_ids"))
    kafka = kafka_figures(settings)
    result = {
        "frames_sent": config.frames,
        "defects_injected": sum(t != "good" for t in truth),
        "defects_reference": len(reference),
        "defects_stored": figures["defect_rows"],
        "defects_lost": len(lost),
        "defects_extra": len(extra),
        "defects_lost_detail": [{"partition": p, "offset": o, **reference[(p, o)]} for p, o in lost[:20]],
        "defects_extra_detail": [{"partition": p, "offset": o, **chaos[(p, o)]} for p, o in extra[:20]],
        "frames_counted": figures["counted_frames"],
        "defects_counted": figures["counted_defects"],
        "alerts_in_table": len(alert_ids),
        "alerts_by_rule": figures["alerts_by_rule"],
        "alerts_reference": len(ref.alert_keys),
        # Rule state lost in a kill would show here: an alert the clean run raised and this one did not.
        "alerts_not_raised": sorted(ref.alert_keys - raised)[:50],
        "alerts_raised_extra": sorted(raised - ref.alert_keys)[:50],
        "webhook_requests_accepted": len(received),
        "webhook_distinct_ids": len(distinct),
        "webhook_duplicates": len(received) - len(distinct),
        "webhook_duplicate_ids": sorted(i for i, c in Counter(received).items() if c > 1)[:50],
        "alerts_missing": len(alert_ids - distinct),
        "alerts_missing_ids": sorted(alert_ids - distinct)[:50],
        "alerts_unknown": len(distinct - alert_ids),
        "webhook_rejected_signatures": webhook.rejected,
        "deliveries_not_delivered": figures["deliveries_pending"],
        "delivery_attempts_max": figures["delivery_attempts_max"],
        "db_offsets": figures["db_offsets"],
        **kafka,
    }
    # The database's offsets are the consumer's truth; Kafka's may lag them after a kill between the two
    # commits until the partition gets a new record (reported), but must never be ahead (records skipped).
    committed = result["committed_offsets"]
    result["kafka_commit_lag"] = {p: result["db_offsets"].get(p, 0) - (c or 0) for p, c in committed.items()}
    result["passed"] = (
        result["defects_lost"] == 0
        and result["defects_extra"] == 0
        and result["defects_stored"] == result["defects_reference"] == result["defects_counted"]
        and result["frames_counted"] == config.frames
        and not result["alerts_not_raised"]
        and not result["alerts_raised_extra"]
        and result["alerts_missing"] == 0
        and result["alerts_unknown"] == 0
        and result["webhook_rejected_signatures"] == 0
        and result["dlq_records"] == 0
        and result["db_offsets"] == result["end_offsets"]
        and min(result["kafka_commit_lag"].values()) >= 0
    )
    return result


@dataclass(frozen=True)
class Reference:
    """What a clean run of the same frames stored: the defects and alerts to expect."""

    defects: dict[tuple[int, int], dict[str, Any]]
    alert_keys: set[str]
    fps: float


def reference_run(base: dict[str, Any], work: Path, frames: int) -> Reference:
    """The same frames through the same code, no chaos, into SQLite under another group (no alert channel)."""
    url = f"sqlite:///{work / 'reference.db'}"
    values = base | {"database_url": url, "group_id": f"{base['group_id']}-ref", "webhook_url": None}
    stats = run_consumer(Settings(**values), max_messages=frames)
    if stats.frames != frames:
        raise RuntimeError(f"the reference run stored {stats.frames} of {frames} frames")
    return Reference(defect_keys(url), alert_keys(url), stats.frames_per_s)


def code_version() -> str:
    """The commit the pipeline code came from, and whether pipeline/ differed from it (others' work in progress)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    if not (REPO / ".git").exists():
        return "unknown (not a git checkout: say what it is with --code)"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes under pipeline/" if git("status", "--porcelain", "pipeline") else "")


def run(config: RunConfig, work: Path, code: str) -> dict[str, Any]:
    model = build_tiny_model(work / "tiny.onnx")
    plan = draw_plan(config)
    logs = work / "logs"
    logs.mkdir()
    pg = Postgres(work)
    webhook = Webhook()
    try:
        with EmbeddedBroker(log_file=work / "broker.log") as broker:
            tag = uuid.uuid4().hex[:6]
            base: dict[str, Any] = {
                "bootstrap_servers": broker.bootstrap,
                "frames_topic": f"chaos-frames-{tag}",
                "dlq_topic": f"chaos-dlq-{tag}",
                "alerts_topic": f"chaos-alerts-{tag}",
                "group_id": f"chaos-{tag}",
                "model_path": model,
                "frame_store_url": str(work / "frames"),  # defect images: kept out of the repository
                "prefer_gpu": False,
                "batch_size": config.batch_size,
                "alert_log": False,
                "alert_cooldown_s": 0.0,  # every defect raises its own alert
                "webhook_secret": SECRET,
                "webhook_timeout_s": 2.0,
                "alert_poll_s": 0.2,
                "alert_retry_initial_s": 0.5,
                "alert_retry_max_s": 5.0,  # a minute's outage then costs seconds, not another minute, after it ends
                "db_retry_initial_s": 0.2,
                "db_retry_max_s": 1.0,
                "db_connect_timeout_s": 2,
                **FAST_GROUP,
            }
            settings_ref = Settings(**{**base, "database_url": "sqlite://"})
            ensure_topics(settings_ref.kafka_common(), [base["frames_topic"]], PARTITIONS)
            ensure_topics(settings_ref.kafka_common(), [base["dlq_topic"], base["alerts_topic"]], 1)
            truth = publish(settings_ref, config)
            log.info("published %d frames; reference run", config.frames)
            reference = reference_run(base, work, config.frames)

            chaos_url = pg.new_database()
            migrate(chaos_url)  # so that progress can be read before the first child has started
            values = base | {"database_url": chaos_url, "webhook_url": webhook.url}
            settings = Settings(**values)
            progress = Progress(chaos_url, settings.group_id)
            clock = Clock()
            lives = Lives(consumer_env(values), logs, clock)
            done = threading.Event()
            events = threading.Thread(
                target=chaos_events,
                args=(plan, config.frames, progress, pg, webhook, clock, done),
                name="chaos-events",
                daemon=True,
            )
            events.start()
            kill_phase(plan, config.batch_size, lives, progress, pg, webhook)
            clock.note("kills done")
            final_phase(config, lives, progress, pg)
            events.join(timeout=plan.webhook_down_s + sum(plan.pg_down_s) + 120)  # every outage over
            if events.is_alive():
                raise RuntimeError("the outage thread did not finish")
            flushed = flush_outbox(settings, timeout_s=60.0)
            time.sleep(1.0)  # a late duplicate would arrive now
            clock.note("outbox flushed", delivered=flushed)
            wall = clock.now()
            checks = verify(config, truth, reference, chaos_url, settings, webhook)
            done.set()
    finally:
        webhook.down()
        pg.close()
    outages = [e for e in clock.events if e["event"].startswith(("postgres", "webhook"))]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "config": asdict(config),
        "plan": asdict(plan),
        "model": "tests/pipeline/model_factory.build_tiny_model (blur reconstruction, 256x256x1)",
        "database": "PostgreSQL (pgserver wheel), unix socket",
        "reference_fps": round(reference.fps, 1),
        "wall_s": wall,
        "kills_done": len(lives.kills),
        "kills_mid_stream": sum(k["stored_in_life"] > 0 for k in lives.kills),
        "kills_during_pg_outage": sum(k["pg_down"] for k in lives.kills),
        "kills_during_webhook_outage": sum(k["webhook_down"] for k in lives.kills),
        "pg_outages": len(plan.pg_at),
        "webhook_down_s": plan.webhook_down_s,
        "consumer_starts": lives.started,
        "restarts": lives.started - 1,
        "self_exits": len(lives.exits),
        "self_exits_while_pg_down": sum(bool(e["pg_down"]) for e in lives.exits),
        "outbox_flushed_after": flushed,
        **checks,
        "kills": lives.kills,
        "exits": lives.exits,
        "outages": outages,
        "events": clock.events,
        "logs": log_summary(logs),
    }


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = r["config"]
    table = Table(title=f"Chaos run, {r['machine']}, {c['frames']} frames on {PARTITIONS} partitions, seed {c['seed']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("expected", justify="right")
    kills = f"{r['kills_mid_stream']} / {r['kills_during_pg_outage']} / {r['kills_during_webhook_outage']}"
    rows = [
        ("SIGKILLs (mid-stream / during PG outage / webhook down)", f"{r['kills_done']} ({kills})", str(c["kills"])),
        ("PostgreSQL outages", f"{r['pg_outages']} ({', '.join(f'{s:.1f}' for s in r['plan']['pg_down_s'])} s)", ""),
        ("webhook down", f"{r['webhook_down_s']:.0f} s", ""),
        ("consumer starts (restarts)", f"{r['consumer_starts']} ({r['restarts']})", ""),
        ("exits on its own (while PG down)", f"{r['self_exits']} ({r['self_exits_while_pg_down']})", ""),
        ("wall time", f"{r['wall_s']:.0f} s", ""),
        ("defects: reference / stored", f"{r['defects_reference']} / {r['defects_stored']}", "equal"),
        ("defects lost / extra", f"{r['defects_lost']} / {r['defects_extra']}", "0 / 0"),
        ("frames counted (inspection_counts)", str(r["frames_counted"]), str(r["frames_sent"])),
        ("defects counted (inspection_counts)", str(r["defects_counted"]), str(r["defects_stored"])),
        ("alerts in table (by rule)", f"{r['alerts_in_table']} {r['alerts_by_rule']}", str(r["alerts_reference"])),
        (
            "alerts not raised / extra vs reference",
            f"{len(r['alerts_not_raised'])} / {len(r['alerts_raised_extra'])}",
            "0 / 0",
        ),
        ("webhook: accepted / distinct ids", f"{r['webhook_requests_accepted']} / {r['webhook_distinct_ids']}", ""),
        ("webhook duplicates (same id again)", str(r["webhook_duplicates"]), "reported"),
        ("alerts missing / unknown ids", f"{r['alerts_missing']} / {r['alerts_unknown']}", "0 / 0"),
        ("deliveries not marked delivered", str(r["deliveries_not_delivered"]), "0"),
        ("DLQ records", str(r["dlq_records"]), "0"),
        ("database offsets = log ends", str(r["db_offsets"] == r["end_offsets"]), "True"),
        ("Kafka commit behind the database, per partition", str(r["kafka_commit_lag"]), ">= 0"),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"log lines: {r['logs']['counts']}")
    console.print("[bold green]PASSED[/]" if r["passed"] else "[bold red]FAILED[/]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--defect-rate", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pg-outages", type=int, default=2)
    parser.add_argument("--pg-down", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--webhook-down", type=float, default=60.0, help="seconds the webhook is down")
    parser.add_argument("--quick", action="store_true", help="smoke run: 400 frames, 4 kills, short outages")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (consumer logs, databases)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/chaos.json)")
    parser.add_argument("--code", help="what code ran, recorded in the JSON (default: the git commit here)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.WARNING)
    if args.quick:
        args.frames, args.kills, args.pg_down, args.webhook_down = 400, 4, (2.0, 4.0), 8.0
    config = RunConfig(
        frames=args.frames,
        kills=args.kills,
        seed=args.seed,
        defect_rate=args.defect_rate,
        batch_size=args.batch_size,
        pg_outages=args.pg_outages,
        pg_down_s=tuple(args.pg_down),
        webhook_down_s=args.webhook_down,
        idle_exit_s=5.0,
    )
    work = Path(tempfile.mkdtemp(prefix="lg-chaos-"))
    try:
        results = run(config, work, args.code or code_version())
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    out = args.out or REPO / "bench" / "results" / ("chaos-quick.json" if args.quick else "chaos.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")
    sys.exit(0 if results["passed"] else 1)


if __name__ == "__main__":
    main()
