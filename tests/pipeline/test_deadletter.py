"""Dead-letter topic failures on the real broker: records too large for the producer, a DLQ topic that cannot
be written, a broker outage in the middle of a flush; every bad record lands in the DLQ exactly once."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import line_settings, make_topics
from helpers import ConsumerThread, db_totals, read_topic, wait_for

from pipeline.deadletter import (
    H_HEADERS_DROPPED,
    H_KEY_DROPPED,
    H_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    H_VALUE_DROPPED,
    DeadLetterSink,
    fit_dead_letter,
)
from pipeline.dev.broker import broker_binary, free_port
from pipeline.dev.simulator import publish_frames, synthetic_frame
from pipeline.errors import BrokerError, ShutdownRequested
from pipeline.settings import Settings
from pipeline.wire import encode_frame

pytestmark = pytest.mark.integration


def consumer_record(
    offset: int, value: bytes = b"v", headers: list[tuple[str, bytes]] | None = None, key: bytes = b"k"
) -> Any:
    """A record as kafka-python's consumer hands it over."""
    from kafka.consumer.fetcher import ConsumerRecord

    headers = headers or []
    return ConsumerRecord("frames", 0, -1, offset, 0, 0, key, value, headers, None, len(key), len(value), -1)


def serialized_size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """What the producer's max_request_size check measures."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def test_dead_letters_shed_value_then_headers_then_reason_then_key_until_they_fit() -> None:
    small = fit_dead_letter(consumer_record(3, b"abc", [("camera-id", b"c1")]), "bad", 100, 10_000)
    assert (small.key, small.value) == (b"k", b"abc")
    assert dict(small.headers) == {
        "camera-id": b"c1",
        H_REASON: b"bad",
        H_SOURCE_TOPIC: b"frames",
        H_SOURCE_PARTITION: b"0",
        H_SOURCE_OFFSET: b"3",
    }

    over_value_cap = fit_dead_letter(consumer_record(4, b"x" * 101), "bad", 100, 10_000)
    assert over_value_cap.value == b"" and dict(over_value_cap.headers)[H_VALUE_DROPPED] == b"101"

    # About 1 MB of headers against a 165 KiB request limit: the headers go, the value fits without them.
    junk = [(f"junk-{i}", b"j" * 10_000) for i in range(100)]
    limit = 100_000 + 64 * 1024
    fitted = fit_dead_letter(consumer_record(5, b"y" * 90_000, junk), "missing header", 100_000, limit)
    headers = dict(fitted.headers)
    assert fitted.value == b"y" * 90_000 and H_VALUE_DROPPED not in headers
    assert headers[H_HEADERS_DROPPED] == str(sum(len(k) + len(v) for k, v in junk)).encode()
    assert not any(k.startswith("junk-") for k in headers)
    assert headers[H_SOURCE_OFFSET] == b"5" and headers[H_REASON] == b"missing header"
    assert serialized_size(fitted.key, fitted.value, fitted.headers) <= limit

    # Neither fits: both go, the coordinates stay.
    both = fit_dead_letter(consumer_record(5, b"y" * 90_000, junk), "missing header", 100_000, 80_000)
    headers = dict(both.headers)
    assert both.value == b"" and headers[H_VALUE_DROPPED] == b"90000" and H_HEADERS_DROPPED in headers
    assert headers[H_SOURCE_OFFSET] == b"5" and headers[H_SOURCE_TOPIC] == b"frames"
    assert serialized_size(both.key, both.value, both.headers) <= 80_000

    # Headers that fit once the value is gone keep their place.
    kept = fit_dead_letter(consumer_record(6, b"z" * 90_000, junk[:5]), "r", 100_000, 80_000)
    assert kept.value == b"" and "junk-0" in dict(kept.headers) and H_HEADERS_DROPPED not in dict(kept.headers)

    # A key larger than the budget: the reason is cut (never inside a UTF-8 character) and the key goes.
    tiny = fit_dead_letter(consumer_record(7, b"", [], key=b"K" * 500), "é" * 600, 100, 1024 + 300)
    reason = dict(tiny.headers)[H_REASON]
    assert 100 <= len(reason) < 1000 and reason.decode()  # decodes: no half character
    assert tiny.key is None and dict(tiny.headers)[H_KEY_DROPPED] == b"500"


def test_a_record_with_a_megabyte_of_headers_is_dead_lettered_without_them(
    bootstrap: str, tmp_path: Path, tiny_model: Path
) -> None:
    from kafka import KafkaProducer

    settings = line_settings(bootstrap, f"sqlite:///{tmp_path / 'big.db'}", tiny_model, max_frame_bytes=100_000)
    make_topics(settings)
    good = encode_frame(synthetic_frame(np.random.default_rng(0)).image, camera_id="cam-1")
    junk = [(f"x-junk-{i}", b"j" * 100_000) for i in range(9)]  # ~0.9 MB: under Apache Kafka's default 1 MB
    headers = [(k, v) for k, v in good.headers if k != "camera-id"] + junk
    producer = KafkaProducer(**settings.producer_options() | {"max_request_size": 2_000_000})
    for value, record_headers in ((good.value, good.headers), (good.value, headers), (good.value, good.headers)):
        producer.send(settings.frames_topic, key=b"cam-1", value=value, headers=record_headers, partition=0)
    producer.flush()
    producer.close()

    stats = ConsumerThread(settings, idle_exit=1.0).start().join()
    assert (stats.frames, stats.dlq) == (2, 1)
    dead = read_topic(settings, settings.dlq_topic, expected=1)
    assert len(dead) == 1
    record = dead[0]
    forwarded = dict(record.headers)
    assert forwarded[H_SOURCE_TOPIC].decode() == settings.frames_topic
    assert (forwarded[H_SOURCE_PARTITION], forwarded[H_SOURCE_OFFSET]) == (b"0", b"1")
    assert forwarded[H_REASON]  # missing camera-id, or whichever header check fires first
    assert int(forwarded[H_HEADERS_DROPPED]) == sum(len(k) + len(v) for k, v in headers)
    assert not any(k.startswith("x-junk-") for k in forwarded)
    assert record.value == good.value  # the value alone fits: it is forwarded


def test_consumer_holds_the_batch_while_the_dlq_fails_then_dead_letters_each_record_once(
    bootstrap: str, tmp_path: Path, tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kafka import KafkaProducer

    url = f"sqlite:///{tmp_path / 'held.db'}"
    fixed = line_settings(bootstrap, url, tiny_model, dlq_retry_initial_s=0.1, dlq_retry_max_s=0.4)
    broken = fixed.model_copy(update={"dlq_topic": "dlq topic?"})  # illegal name: every DLQ send fails for real
    make_topics(fixed)
    publish_frames(fixed, count=3, rate=None, seed=1)
    good = encode_frame(synthetic_frame(np.random.default_rng(1)).image, camera_id="cam-1")
    producer = KafkaProducer(**fixed.producer_options())
    no_camera = [(k, v) for k, v in good.headers if k != "camera-id"]
    for value, headers in ((good.value, no_camera), (b"", good.headers), (good.value[:100], good.headers)):
        producer.send(fixed.frames_topic, key=b"cam-1", value=value, headers=headers, partition=0)
    producer.flush()
    producer.close()
    publish_frames(fixed, count=3, rate=None, seed=2)
    bad_offsets = {3, 4, 5}

    caplog.set_level(logging.WARNING, logger="pipeline.deadletter")

    def retries() -> int:
        return sum("batch held" in r.getMessage() for r in list(caplog.records) if r.name == "pipeline.deadletter")

    held = ConsumerThread(broken).start()
    try:
        wait_for(lambda: retries() >= 4, timeout=60, what="DLQ sends retried")
        assert held.error is None and held._thread.is_alive()
        assert held.frames <= 3  # the batch with the bad records is neither stored nor committed
    finally:
        stats = held.stop()
    assert stats.frames == held.frames
    assert "InvalidTopicError" in caplog.text or "illegal" in caplog.text

    rerun = ConsumerThread(fixed, idle_exit=1.0).start().join()
    assert held.frames + rerun.frames == 6 == db_totals(url)[0]
    dead = read_topic(fixed, fixed.dlq_topic, expected=len(bad_offsets))
    assert sorted(int(dict(r.headers)[H_SOURCE_OFFSET]) for r in dead) == sorted(bad_offsets)


class CuttableLink:
    """A TCP relay to a broker: `cut()` drops every connection and refuses new ones until `mend()`."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._open = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def mend(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        server.settimeout(0.1)
        self._open.set()
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        self._open.clear()
        time.sleep(0.2)  # the accept loop closes its server socket
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def _accept(self, server: socket.socket) -> None:
        with server:
            while self._open.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                with self._lock:
                    self._sockets |= {client, upstream}
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            src.close()
            dst.close()


@pytest.fixture
def link() -> Iterator[CuttableLink]:
    """A Tansu broker of this test's own that clients reach only through a CuttableLink (it advertises the link)."""
    try:
        binary = broker_binary()
    except BrokerError as exc:
        pytest.skip(str(exc))
    port = free_port()
    relay = CuttableLink(port)
    command = [
        binary,
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{relay.port}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _listening(port), timeout=20, what="broker listening")
        relay.mend()
        yield relay
    finally:
        relay.cut()
        process.kill()
        process.wait()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_broker_outage_mid_flush_resends_only_what_failed(link: CuttableLink) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    bootstrap = f"127.0.0.1:{link.port}"
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    admin.create_topics([NewTopic("dlq", 1, 1)])
    admin.close()
    # Idempotence off: kafka-python 3.0.12's idempotent producer never sends again once a batch it had sent
    # expires (reset_producer_id leaves it READY without a producer id, so no InitProducerId is ever requested).
    producer = KafkaProducer(
        bootstrap_servers=[bootstrap],
        acks="all",
        linger_ms=5,
        max_block_ms=1000,
        request_timeout_ms=1000,
        delivery_timeout_ms=2000,
        reconnect_backoff_max_ms=200,
        enable_idempotence=False,
    )
    stop = threading.Event()
    sink = DeadLetterSink(producer, "dlq", 10_000, retry_initial_s=0.2, retry_max_s=0.5, send_timeout_s=3.0, stop=stop)
    try:
        sink.add(consumer_record(0), "first")
        sink.flush()

        sink.add(consumer_record(1), "landed before the outage")
        producer.flush(timeout=10)
        link.cut()
        sink.add(consumer_record(2), "sent into the outage")
        mended = _after(lambda: sink.retries >= 2, link.mend)
        sink.flush()  # returns once record 2 is in the topic; record 1 is not sent again
        mended.join(10)
        assert sink.retries >= 2

        link.cut()
        sink.add(consumer_record(3), "sent into an outage, then stop")
        _after(lambda: sink.retries >= 4, stop.set)
        started = time.monotonic()
        with pytest.raises(ShutdownRequested):
            sink.flush()
        assert time.monotonic() - started < 30
    finally:
        link.mend()
        producer.close(timeout=5)

    settings = Settings(bootstrap_servers=bootstrap)
    dead = read_topic(settings, "dlq", expected=3)
    offsets = [int(dict(r.headers)[H_SOURCE_OFFSET]) for r in dead]
    assert sorted(offsets) == [0, 1, 2]  # each once; 3 was never delivered, its batch is replayed


def _after(condition: Callable[[], bool], action: Callable[[], None]) -> threading.Thread:
    """Run `action` once `condition` holds (the sink itself must stay on the test's thread)."""

    def run() -> None:
        wait_for(condition, timeout=60)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
