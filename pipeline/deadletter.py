"""Dead-letter sink: a record that cannot be decoded or is invalid goes to the DLQ topic with reason and source."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.results import Source

log = logging.getLogger(__name__)

H_REASON = "dlq-reason"
H_SOURCE_TOPIC = "dlq-source-topic"
H_SOURCE_PARTITION = "dlq-source-partition"
H_SOURCE_OFFSET = "dlq-source-offset"
H_VALUE_DROPPED = "dlq-value-dropped"  # original value length, when it was too large to forward


class DeadLetterSink:
    """`add` sends asynchronously; `flush` waits for every send and raises if one failed (no commit then)."""

    def __init__(self, producer: Any, topic: str, max_value_bytes: int) -> None:
        self.producer = producer
        self.topic = topic
        self.max_value_bytes = max_value_bytes
        self._futures: list[Any] = []

    def add(self, record: Any, reason: str) -> None:
        source = Source(record.topic, record.partition, record.offset)
        log.warning("dead-letter %s: %s", source, reason)
        headers = [(k, v) for k, v in (record.headers or []) if not k.startswith("dlq-")]
        headers += [
            (H_REASON, reason.encode()[:1000]),
            (H_SOURCE_TOPIC, source.topic.encode()),
            (H_SOURCE_PARTITION, str(source.partition).encode()),
            (H_SOURCE_OFFSET, str(source.offset).encode()),
        ]
        value = record.value
        if value is not None and len(value) > self.max_value_bytes:
            # Forwarding it would fail the producer's size check and stall the line: keep the coordinates only.
            headers.append((H_VALUE_DROPPED, str(len(value)).encode()))
            value = b""
        self._futures.append(self.producer.send(self.topic, key=record.key, value=value, headers=headers))

    def flush(self, timeout_s: float = 30.0) -> None:
        if not self._futures:
            return
        self.producer.flush(timeout=timeout_s)
        futures, self._futures = self._futures, []
        for future in futures:
            future.get(timeout=timeout_s)  # raises the send error: the batch is then not committed
