"""Offsets on the real broker: database offsets beyond a recreated topic's log end stop the consumer with one
readable line (also through `lineguard consume`), and a failed Kafka commit keeps its offsets for the next one."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CONSUME, REPO_ROOT, consumer_env, line_settings, make_topics
from helpers import ConsumerThread, committed_offset
from sqlalchemy import create_engine, insert

from pipeline.dev.broker import EmbeddedBroker, ensure_topics
from pipeline.dev.simulator import publish_frames
from pipeline.errors import OffsetsAheadError
from pipeline.settings import Settings
from pipeline.source import FrameSource
from pipeline.storage.engine import migrate
from pipeline.storage.tables import SourceOffset

pytestmark = pytest.mark.integration


def recreate_topic(settings: Settings, topic: str) -> None:
    """Delete and create `topic` again (Apache Kafka deletes asynchronously: retry the creation)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**settings.kafka_common())
    try:
        admin.delete_topics([topic])
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_topics([NewTopic(topic, 1, 1)])
                return
            except TopicAlreadyExistsError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()


def store_offset(url: str, group_id: str, topic: str, next_offset: int) -> None:
    """A source_offsets row as a consumer that read `next_offset` records of `topic` would have left it."""
    migrate(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(SourceOffset),
            [
                {
                    "group_id": group_id,
                    "topic": topic,
                    "partition": 0,
                    "next_offset": next_offset,
                    "updated_at": datetime.now(UTC),
                }
            ],
        )
    engine.dispose()


def test_offsets_beyond_a_recreated_topic_stop_the_consumer(bootstrap: str, db_url: str, tiny_model: Path) -> None:
    settings = line_settings(bootstrap, db_url, tiny_model)
    make_topics(settings)
    publish_frames(settings, count=20, rate=None, seed=1)
    assert ConsumerThread(settings, idle_exit=1.0).start().join().frames == 20

    recreate_topic(settings, settings.frames_topic)
    publish_frames(settings, count=5, rate=None, seed=2)
    with pytest.raises(OffsetsAheadError) as caught:
        ConsumerThread(settings, idle_exit=5.0).start().join()
    error = caught.value
    assert (error.topic, error.partition, error.stored, error.end) == (settings.frames_topic, 0, 20, 5)
    message = str(error)
    assert "\n" not in message
    assert f"{settings.frames_topic}[0]" in message and "next offset 20" in message and "log end 5" in message
    assert "recreated" in message and "DELETE FROM source_offsets" in message


def test_consume_command_reports_offsets_ahead_in_one_line(bootstrap: str, tmp_path: Path, tiny_model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    settings = line_settings(bootstrap, url, tiny_model)
    make_topics(settings)
    publish_frames(settings, count=3, rate=None, seed=1)
    store_offset(url, settings.group_id, settings.frames_topic, 50)  # as if the topic had once held 50 records
    command = [*CONSUME, "--idle-exit", "5"]
    env = consumer_env(settings)
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {settings.frames_topic}[0]: the database's next offset 50"), last
    assert "log end 3" in last and f"group_id = '{settings.group_id}'" in last


def test_a_failed_commit_keeps_its_offsets_for_the_next_one() -> None:
    """The broker is down at the first commit and back at the second; a partition no longer assigned is dropped."""
    from kafka import KafkaConsumer, TopicPartition

    broker = EmbeddedBroker().start()  # its own broker: this test stops it
    settings = Settings(bootstrap_servers=broker.bootstrap, frames_topic="frames", group_id="commits")
    consumer = KafkaConsumer(
        **settings.consumer_options(),
        group_id=settings.group_id,
        enable_auto_commit=False,
        request_timeout_ms=2000,
        reconnect_backoff_max_ms=300,
    )
    kept, moved = TopicPartition("frames", 0), TopicPartition("frames", 1)
    consumer.assign([kept, moved])
    source = FrameSource(consumer, poll_timeout_ms=100)
    try:
        broker.stop()
        source.commit({("frames", 0): 7, ("frames", 1): 4})
        assert source.pending == {("frames", 0): 7, ("frames", 1): 4}

        broker.start()  # same port; memory only, so the topic is created again
        ensure_topics(settings.kafka_common(), ["frames"], partitions=2)
        consumer.assign([kept])  # partition 1 went to another member meanwhile
        source.commit({})
        assert source.pending == {}
        assert consumer.committed(kept) == 7
        assert consumer.committed(moved) is None
    finally:
        consumer.close(autocommit=False)
        broker.stop()


def test_kafka_commit_catches_up_with_the_database_on_assignment(
    bootstrap: str, tmp_path: Path, tiny_model: Path
) -> None:
    # A kill between the database commit and the Kafka commit of a partition's last batch: nothing arrives later
    # to commit it, so the consumer must bring Kafka level when it positions the partition.
    url = f"sqlite:///{tmp_path / 'level.db'}"
    settings = line_settings(bootstrap, url, tiny_model)
    make_topics(settings)
    publish_frames(settings, count=12, rate=None, seed=1, defect_rate=0.0)
    store_offset(url, settings.group_id, settings.frames_topic, 12)
    assert committed_offset(settings) is None
    stats = ConsumerThread(settings, idle_exit=2.0).start().join(timeout=60)
    assert stats.frames == 0 and committed_offset(settings) == 12
