"""Hostile input against the real broker and PostgreSQL: over a thousand bad records of every kind mixed with good
frames; each bad one is dead-lettered once with its reason, each good one scored, the consumer alive and its memory
within the bound its settings give. And a record the database itself refuses is isolated, not a crash loop."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CONSUME,
    REPO_ROOT,
    consumer_env,
    line_settings,
    make_topics,
    new_pg_database,
)
from helpers import ConsumerThread, db_totals, read_topic, wait_for
from hostile import Hostile, good_frame, mixed_records
from sqlalchemy import create_engine, text

from pipeline.deadletter import H_REASON, H_SOURCE_OFFSET
from pipeline.dev.simulator import publish_frames
from pipeline.settings import Settings
from pipeline.storage.engine import migrate
from pipeline.wire import EncodedFrame

pytestmark = pytest.mark.integration

RECORDS = 1200
MAX_FRAME_BYTES = 1_000_000
MAX_FRAME_PIXELS = 4_000_000


def produce(settings: Settings, records: list[Hostile | EncodedFrame]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=20)
    for record in records:
        producer.send(settings.frames_topic, key=b"k", value=record.value, headers=record.headers)
    producer.flush(timeout=120)
    producer.close()


def consume_in_a_process(settings: Settings, log_path: Path) -> tuple[int, int, str]:
    """`lineguard consume --idle-exit` as a child process: (exit code, peak resident memory in bytes, output)."""
    env = consumer_env(settings)
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [*CONSUME, "--idle-exit", "4"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        peak = 0
        while child.poll() is None:
            peak = max(peak, peak_rss(child.pid))
            if time.monotonic() > deadline:
                child.kill()
                raise AssertionError(f"consumer still running after 300 s; see {log_path}")
            time.sleep(0.1)
    return child.returncode, peak, log_path.read_text(errors="replace")


def peak_rss(pid: int) -> int:
    """The process's resident high-water mark since it exec'd (VmHWM), in bytes; 0 once it has exited.

    Not wait4's ru_maxrss: that also counts the moment between fork and exec, when the child still maps the
    test process's memory (hundreds of MB late in a suite), which says nothing about the consumer."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def test_a_thousand_hostile_records_are_dead_lettered_once_and_memory_stays_bounded(
    bootstrap: str, pg_server: str, tiny_model: Path, tmp_path: Path
) -> None:
    limits = {"max_frame_bytes": MAX_FRAME_BYTES, "max_frame_pixels": MAX_FRAME_PIXELS, "decode_threads": 2}
    # The steady state: the same consumer on good frames only.
    baseline = line_settings(bootstrap, new_pg_database(pg_server), tiny_model, **limits)
    make_topics(baseline)
    rng = np.random.default_rng(1)
    produce(baseline, [good_frame(rng, seq) for seq in range(150)])
    code, baseline_peak, output = consume_in_a_process(baseline, tmp_path / "baseline.log")
    assert code == 0, output

    settings = line_settings(bootstrap, new_pg_database(pg_server), tiny_model, **limits)
    make_topics(settings)
    records = list(mixed_records(RECORDS, good_share=0.3, max_frame_bytes=MAX_FRAME_BYTES))
    bad = {offset: r for offset, r in enumerate(records) if isinstance(r, Hostile)}
    good = len(records) - len(bad)
    assert len(bad) >= 800 and len({r.kind for r in bad.values()}) >= 30
    produce(settings, records)
    code, peak, output = consume_in_a_process(settings, tmp_path / "hostile.log")

    assert code == 0, output[-3000:]
    assert f"frames {good} " in output and f"dead-lettered {len(bad)} " in output, output[-1500:]
    assert db_totals(settings.db_url)[0] == good  # every good frame scored and counted, once
    dead = read_topic(settings, settings.dlq_topic, expected=len(bad), timeout=60)
    offsets = Counter(int(dict(r.headers)[H_SOURCE_OFFSET]) for r in dead)
    assert set(offsets) == set(bad) and max(offsets.values()) == 1  # each bad record exactly once
    for record in dead:
        headers = dict(record.headers)
        expected = bad[int(headers[H_SOURCE_OFFSET])]
        assert expected.reason in headers[H_REASON].decode(), (expected.kind, headers[H_REASON])
    growth = peak - baseline_peak
    bound = settings.memory_bound_bytes
    print(f"peak RSS {peak >> 20} MiB, steady {baseline_peak >> 20} MiB, bound +{bound >> 20} MiB")
    assert growth <= bound, (peak, baseline_peak, bound)


def refuse_camera(url: str, camera: str, table: str = "inspection_counts", column: str = "camera_id") -> None:
    """A rule of the database's own that the wire format knows nothing of: rows of `table` for `camera` (counts, by
    default) are refused."""
    migrate(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        if url.startswith("sqlite"):
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                    f"WHEN NEW.{column} = '{camera}' BEGIN SELECT RAISE(ABORT, 'camera refused'); END"
                )
            )
        else:
            conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT refuse CHECK ({column} <> '{camera}')"))
    engine.dispose()


def test_a_frame_the_database_refuses_is_isolated_and_dead_lettered(
    bootstrap: str, db_url: str, tiny_model: Path
) -> None:
    settings = line_settings(bootstrap, db_url, tiny_model, batch_size=16)
    make_topics(settings)
    refuse_camera(db_url, "cam-poison")
    rng = np.random.default_rng(3)
    frames = [good_frame(rng, seq) for seq in range(40)]
    poisoned = {5, 17, 18, 33}
    for seq in poisoned:
        frame = frames[seq]
        headers = [(k, b"cam-poison" if k == "camera-id" else v) for k, v in frame.headers]
        frames[seq] = EncodedFrame(frame.key, frame.value, headers)
    produce(settings, frames)
    consumer = ConsumerThread(settings).start()
    try:
        wait_for(lambda: db_totals(db_url)[0] == 36, timeout=60, what="the other frames stored")
        publish_frames(settings, count=10, rate=None, seed=4, defect_rate=0.0)  # the line goes on
        wait_for(lambda: db_totals(db_url)[0] == 46, timeout=60, what="frames after the refused ones")
    finally:
        stats = consumer.stop()
    assert (stats.frames, stats.dlq) == (46, 4)
    dead = read_topic(settings, settings.dlq_topic, expected=4)
    assert sorted(int(dict(r.headers)[H_SOURCE_OFFSET]) for r in dead) == sorted(poisoned)
    assert all(dict(r.headers)[H_REASON].startswith(b"database refused the frame") for r in dead)
