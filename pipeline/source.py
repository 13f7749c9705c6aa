"""The frames topic as one member of the consumer group sees it: poll records, commit offsets the database already
holds, and on assignment position each partition at the database offset (the database commits first, so it is never
behind Kafka) after checking that offset against the partition's log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import OffsetsAheadError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read
StoredOffsets = Callable[[list[tuple[str, int]]], Offsets]
Settle = Callable[[float | None], bool]  # wait up to N s for the batch being written; False if it has not landed

RETRY_WARNING_S = 30.0  # while positioning cannot read the offsets, warn at most this often
PROBE_S = 5.0  # at most this long to read a partition's high watermark back from a fetch


def next_offsets(records: list[Any]) -> Offsets:
    """The offset after the last record of each partition in `records`."""
    offsets: Offsets = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets


class FrameSource:
    """A subscribed KafkaConsumer (auto-commit off); commits that fail are retried with the next one.

    kafka-python 3.0 runs rebalance listeners on its IO thread, where blocking consumer calls raise: the
    listener only pauses newly assigned partitions, and `poll` (on the caller's thread) reads their database
    offsets and log bounds, seeks and resumes them. Paused, they return no record before they are positioned.
    """

    def __init__(
        self,
        consumer: Any,
        poll_timeout_ms: int,
        stored_offsets: StoredOffsets | None = None,
        group_id: str = "",
        probe_options: dict[str, Any] | None = None,
    ) -> None:
        self.consumer = consumer
        self.poll_timeout_ms = poll_timeout_ms
        self.stored_offsets = stored_offsets
        self.group_id = group_id
        self.probe_options = probe_options  # a short-lived consumer's options, to confirm a log end (see _log_ends)
        self.pending: Offsets = {}
        # Revocations so far: a batch polled before one is left to the partitions' owner, not judged (consumer.py).
        self.revocations = 0
        self._lock = threading.Lock()  # the listener (IO thread) and poll/commit (caller) share the two below
        self._unpositioned: set[Any] = set()
        self._next_warning = 0.0

    @classmethod
    def subscribe(cls, settings: Settings, stored_offsets: StoredOffsets, settle: Settle) -> FrameSource:
        """Join the group on the frames topic; `settle` lets an in-flight write finish (for at most
        `rebalance_settle_s`) before partitions go."""
        from kafka import KafkaConsumer

        options = settings.consumer_options()
        consumer = KafkaConsumer(
            **options,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        source = cls(consumer, settings.poll_timeout_ms, stored_offsets, settings.group_id, options)
        listener = _rebalance_listener(source, settle, settings.rebalance_settle_s)
        consumer.subscribe([settings.frames_topic], listener=listener)
        return source

    def poll(self, limit: int, wait: bool = True) -> list[Any]:
        """Records of positioned partitions, waiting up to poll_timeout_ms for some unless `wait` is False (then only
        those already fetched); raises OffsetsAheadError when the database is beyond a log end."""
        self._position_assigned()
        batches = self.consumer.poll(timeout_ms=self.poll_timeout_ms if wait else 0, max_records=limit)
        self._position_assigned()  # those assigned during this poll: paused, so none of their records are here
        return [record for records in batches.values() for record in records]

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def commit(self, offsets: Offsets) -> None:
        """Commit to Kafka what the database already holds, for the partitions this member still owns."""
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        # A rebalance during the write may have moved a partition: its new owner resumes from the database.
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        with self._lock:
            for key, value in offsets.items():
                if key in assigned:
                    self.pending[key] = max(self.pending.get(key, 0), value)
            self.pending = {key: value for key, value in self.pending.items() if key in assigned}
            todo = dict(self.pending)
        if not todo:
            return
        try:
            self.consumer.commit({_tp(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in todo.items()})
        except KafkaError as exc:
            # Kept for the next commit; meanwhile the database offsets keep a replay harmless.
            log.warning("offset commit failed (%s); %d partitions' offsets kept for the next commit", exc, len(todo))
            return
        with self._lock:
            for key, value in todo.items():
                if self.pending.get(key) == value:
                    del self.pending[key]

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

    def hold(self, assigned: Any) -> None:
        """Listener side of an assignment: no records from these partitions until `poll` has positioned them."""
        with self._lock:
            self._unpositioned |= set(assigned)
        self.consumer.pause(*assigned)

    def forget(self, revoked: Any) -> None:
        """Listener side of a revocation: the next owner may commit further; never commit ours over it."""
        keys = {(tp.topic, tp.partition) for tp in revoked}
        with self._lock:
            self.revocations += 1
            self._unpositioned -= set(revoked)
            self.pending = {key: value for key, value in self.pending.items() if key not in keys}

    def _position_assigned(self) -> None:
        """Seek held partitions to the database offsets, checked against the log; resume them."""
        from kafka.errors import KafkaError

        with self._lock:
            self._unpositioned &= self.consumer.assignment()
            held = sorted(self._unpositioned)
        if not held:
            return
        try:
            stored = self.stored_offsets([(tp.topic, tp.partition) for tp in held]) if self.stored_offsets else {}
            known = [tp for tp in held if (tp.topic, tp.partition) in stored]
            beginning = self.consumer.beginning_offsets(known) if known else {}
            end = self.consumer.end_offsets(known) if known else {}
            targets = {tp: stored[(tp.topic, tp.partition)] for tp in known}
            end = self._log_ends(end, [tp for tp in known if targets[tp] > end[tp]])
        except (KafkaError, SQLAlchemyError, OSError) as exc:
            # Stay paused and try again on the next poll: positioning blind could skip records.
            if time.monotonic() >= self._next_warning:
                self._next_warning = time.monotonic() + RETRY_WARNING_S
                log.warning("cannot position assigned partitions yet (%s: %s); retrying", type(exc).__name__, exc)
            return
        ahead = [tp for tp in known if targets[tp] > end[tp]]
        if ahead:
            tp = ahead[0]
            raise OffsetsAheadError(self.group_id, tp.topic, tp.partition, targets[tp], end[tp], len(ahead) - 1)
        for tp, target in targets.items():
            if target < beginning[tp]:
                log.warning(
                    "%s[%d]: %d records lost to retention (deleted before they were processed: the database's next"
                    " offset is %d, the log starts at %d); continuing from %d",
                    tp.topic,
                    tp.partition,
                    beginning[tp] - target,
                    target,
                    beginning[tp],
                    beginning[tp],
                )
                target = beginning[tp]
            self.consumer.seek(tp, target)
            targets[tp] = target
        with self._lock:
            self._unpositioned -= set(held)
        self.consumer.resume(*held)
        # Kafka's committed offset may lag the database's (a kill between the two commits): bring it level now,
        # or a partition that receives nothing more shows that lag for good.
        self.commit({(tp.topic, tp.partition): target for tp, target in targets.items()})

    def _log_ends(self, ends: dict[Any, int], suspect: list[Any]) -> dict[Any, int]:
        """`ends` with each suspect partition's end read back from a fetch's high watermark: tansu answers
        ListOffsets(latest) with its last record batch's base offset + 1, which would make a database offset
        inside that batch look ahead of the log. Apache Kafka's answer is right and is confirmed."""
        if not suspect or self.probe_options is None:
            return ends
        from kafka import KafkaConsumer
        from kafka.errors import KafkaTimeoutError

        probe = KafkaConsumer(**self.probe_options, group_id=None, enable_auto_commit=False)
        try:
            probe.assign(suspect)
            for tp in suspect:
                probe.seek(tp, ends[tp])  # within the log whichever answer is right
            deadline = time.monotonic() + PROBE_S
            while time.monotonic() < deadline and any(probe.highwater(tp) is None for tp in suspect):
                probe.poll(timeout_ms=200)
            highwater = {tp: probe.highwater(tp) for tp in suspect}
        finally:
            probe.close()
        if any(value is None for value in highwater.values()):
            raise KafkaTimeoutError(f"no fetch answered within {PROBE_S:.0f}s to confirm the log end")
        return {tp: max(end, highwater.get(tp) or 0) for tp, end in ends.items()}


def _rebalance_listener(source: FrameSource, settle: Settle, settle_s: float) -> Any:
    from kafka import ConsumerRebalanceListener

    class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
        """Let the batch being written land on revoke (for a bounded time); hold assigned partitions for `poll`."""

        def on_partitions_revoked(self, revoked: Any) -> None:
            # The partitions' next owner starts from the database offsets. (Committing to Kafka from here
            # is not possible: kafka-python runs listeners on its IO thread, which also sends heartbeats.)
            log.info("revoked partitions: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))
            source.forget(revoked)
            if not settle(settle_s):
                log.warning(
                    "the batch being written has not reached the database after %.1fs (database unavailable?);"
                    " letting the partitions go: their next owner resumes from the database offsets and the"
                    " fresh-results filter keeps the late write harmless",
                    settle_s,
                )

        def on_partitions_assigned(self, assigned: Any) -> None:
            log.info("assigned partitions: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
            source.hold(assigned)  # only non-blocking calls here (IO thread): `poll` positions them

    return RebalanceListener()


def _tp(topic: str, partition: int) -> Any:
    from kafka.structs import TopicPartition

    return TopicPartition(topic, partition)
