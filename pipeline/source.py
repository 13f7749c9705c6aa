"""The frames topic as one member of the consumer group sees it: poll records, commit offsets the database already
holds, and on assignment skip ahead to the database offsets (the database commits first, so it is never behind)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline.settings import Settings

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


def next_offsets(records: list[Any]) -> Offsets:
    """The offset after the last record of each partition in `records`."""
    offsets: Offsets = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets


class FrameSource:
    """A subscribed KafkaConsumer (auto-commit off); commits that fail are retried with the next one."""

    def __init__(self, consumer: Any, poll_timeout_ms: int) -> None:
        self.consumer = consumer
        self.poll_timeout_ms = poll_timeout_ms
        self.pending: Offsets = {}

    @classmethod
    def subscribe(
        cls, settings: Settings, stored_offsets: Callable[[list[tuple[str, int]]], Offsets], settle: Callable[[], None]
    ) -> FrameSource:
        """Join the group on the frames topic; `settle` lets an in-flight write finish before partitions go."""
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            **settings.consumer_options(),
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        source = cls(consumer, settings.poll_timeout_ms)
        consumer.subscribe([settings.frames_topic], listener=_rebalance_listener(source, stored_offsets, settle))
        return source

    def poll(self, limit: int) -> list[Any]:
        batches = self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=limit)
        return [record for records in batches.values() for record in records]

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def commit(self, offsets: Offsets) -> None:
        """Commit to Kafka what the database already holds, for the partitions this member still owns."""
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        # A rebalance during the write may have moved a partition: its new owner resumes from the database.
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for key, value in offsets.items():
            if key in assigned:
                self.pending[key] = max(self.pending.get(key, 0), value)
        if not self.pending:
            return
        try:
            self.consumer.commit({_tp(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in self.pending.items()})
        except KafkaError as exc:
            # Typically a rebalance: whoever gets the partition resumes from the database offsets.
            log.warning("offset commit failed (%s); the database offsets keep the replay harmless", exc)
        self.pending.clear()

    def lag(self, offsets: Offsets) -> Offsets:
        """Records behind the high watermark, per partition of `offsets` whose watermark is known."""
        lags: Offsets = {}
        for (topic, partition), next_offset in offsets.items():
            highwater = self.consumer.highwater(_tp(topic, partition))
            if highwater is not None:
                lags[(topic, partition)] = max(0, highwater - next_offset)
        return lags

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def _rebalance_listener(
    source: FrameSource, stored_offsets: Callable[[list[tuple[str, int]]], Offsets], settle: Callable[[], None]
) -> Any:
    from kafka import ConsumerRebalanceListener

    class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
        """Let the batch being written land on revoke; on assignment, seek to what the database holds."""

        def on_partitions_revoked(self, revoked: Any) -> None:
            # The partitions' next owner starts from the database offsets. (Committing to Kafka from here
            # is not possible: kafka-python runs listeners on its IO thread.)
            log.info("revoked partitions: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))
            settle()

        def on_partitions_assigned(self, assigned: Any) -> None:
            log.info("assigned partitions: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
            # Only non-blocking calls (seek) are allowed on the IO thread.
            try:
                stored = stored_offsets([(tp.topic, tp.partition) for tp in assigned])
            except Exception as exc:  # the database may be down: then Kafka's offset and the replay filter suffice
                log.warning("could not read stored offsets on assignment: %s", exc)
                return
            for tp in assigned:
                target = stored.get((tp.topic, tp.partition))
                if target is not None:
                    source.consumer.seek(tp, target)

    return RebalanceListener()


def _tp(topic: str, partition: int) -> Any:
    from kafka.structs import TopicPartition

    return TopicPartition(topic, partition)
