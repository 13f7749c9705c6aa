"""Dead-letter sink: a record that cannot be decoded or is invalid goes to the DLQ topic with reason and source."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ShutdownRequested
from pipeline.results import Source
from pipeline.retry import Backoff, retry
from pipeline.settings import HEADER_HEADROOM_BYTES, Settings

log = logging.getLogger(__name__)

H_REASON = "dlq-reason"
H_SOURCE_TOPIC = "dlq-source-topic"
H_SOURCE_PARTITION = "dlq-source-partition"
H_SOURCE_OFFSET = "dlq-source-offset"
H_VALUE_DROPPED = "dlq-value-dropped"  # original value length, when it was too large to forward
H_HEADERS_DROPPED = "dlq-headers-dropped"  # original headers' bytes (names + values), when they did not fit
H_KEY_DROPPED = "dlq-key-dropped"  # original key length, when even the key did not fit

REASON_MAX_BYTES = 1000
REASON_MIN_BYTES = 100  # kept while dropping the key can make room
# Our size sum leaves out the record batch header (61 bytes) and per-record framing (a few varints): a
# generous margin keeps a fitted record under the producer's max_request_size check.
RECORD_MARGIN_BYTES = 1024
HEADER_OVERHEAD_BYTES = 10  # two varint lengths per header, at most 5 bytes each
WAIT_SLICE_S = 0.25  # how often a slow send looks at the stop event


@dataclass(frozen=True)
class DeadLetter:
    """The record as the DLQ topic receives it."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def fit_dead_letter(
    record: Any, reason: str, max_value_bytes: int, max_record_bytes: int, strip: bool = False
) -> DeadLetter:
    """The DLQ copy of `record`, shrunk until key, value and headers fit `max_record_bytes`: the value goes first,
    then the original headers (the value comes back if it fits without them), then the reason is cut, then the
    key; each drop leaves a header saying how large the part was. The coordinate headers always go. `strip`
    drops value and original headers outright (the broker refused the record's size)."""
    coordinates = [
        (H_SOURCE_TOPIC, record.topic.encode()),
        (H_SOURCE_PARTITION, str(record.partition).encode()),
        (H_SOURCE_OFFSET, str(record.offset).encode()),
    ]
    # A null header value would fail the producer's (str, bytes) check and hold the line.
    original = [(k, v or b"") for k, v in (record.headers or []) if not k.startswith("dlq-")]
    value: bytes = record.value or b""  # a null value with a null key is not a valid record
    key: bytes | None = record.key
    reason_bytes = _cut_utf8(reason.encode(), REASON_MAX_BYTES)
    budget = max_record_bytes - RECORD_MARGIN_BYTES
    drop_value = drop_headers = drop_key = False

    def letter() -> DeadLetter:
        notes = []
        if drop_value:
            notes.append((H_VALUE_DROPPED, str(len(value)).encode()))
        if drop_headers:
            notes.append((H_HEADERS_DROPPED, str(sum(len(k.encode()) + len(v) for k, v in original)).encode()))
        if drop_key:
            notes.append((H_KEY_DROPPED, str(len(key or b"")).encode()))
        headers = [*([] if drop_headers else original), (H_REASON, reason_bytes), *coordinates, *notes]
        return DeadLetter(None if drop_key else key, b"" if drop_value else value, headers)

    def over() -> int:
        fitted = letter()
        return len(fitted.key or b"") + len(fitted.value) + _headers_size(fitted.headers) - budget

    drop_value = bool(value) and (strip or len(value) > max_value_bytes or over() > 0)
    drop_headers = bool(original) and (strip or over() > 0)
    if drop_value and drop_headers and not strip and len(value) <= max_value_bytes:
        drop_value = False  # the headers were the bulk
        drop_value = over() > 0
    if over() > 0:  # the reason's first words matter more than a (pathologically large) key
        reason_bytes = _cut_utf8(reason_bytes, max(REASON_MIN_BYTES, len(reason_bytes) - over()))
    drop_key = bool(key) and over() > 0
    if over() > 0:
        reason_bytes = _cut_utf8(reason_bytes, max(0, len(reason_bytes) - over()))
    return letter()


def _headers_size(headers: list[tuple[str, bytes]]) -> int:
    return sum(len(k.encode()) + len(v) + HEADER_OVERHEAD_BYTES for k, v in headers)


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes, never ending inside a UTF-8 character (readers decode the reason)."""
    return data[:limit].decode(errors="ignore").encode()


@dataclass
class _Send:
    """One dead letter until it is in the DLQ topic: its send's future, or why the send could not start."""

    record: Any
    reason: str
    letter: DeadLetter
    future: Any = None
    error: BaseException | None = None
    started: float = 0.0  # monotonic time of the latest send

    @property
    def failed(self) -> bool:
        return self.future is None or (self.future.is_done and self.future.exception is not None)

    @property
    def cause(self) -> BaseException | None:
        return self.error if self.future is None else self.future.exception


class _Undelivered(Exception):
    """A flush round that left letters out of the DLQ topic (failed, or still in flight at its end)."""

    def __init__(self, left: int, failed: int, cause: BaseException | None, oldest_s: float) -> None:
        shown = f"{type(cause).__name__}: {cause}" if cause is not None else "-"
        super().__init__(
            f"{left} of the batch's letters not delivered ({failed} failed: {shown}; {left - failed} still in flight,"
            f" for up to {oldest_s:.0f}s)"
        )


class DeadLetterSink:
    """`add` sends asynchronously; `flush` returns once every dead letter is in the DLQ topic.

    Sends that fail (topic missing, no ACL, broker down) are retried with backoff (`pipeline.retry`) while `flush`
    holds the batch (its offsets are not committed), and only those: a letter that landed is never sent again by
    the retry. `stop` set during the backoff raises ShutdownRequested; the batch is then replayed by the next run,
    which sends its letters again (DLQ readers dedupe on the dlq-source-* headers).

    One instance per thread (the main loop and the database writer each build their own); the KafkaProducer they
    share is thread-safe. An instance refuses calls from a second thread rather than interleave two batches.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        max_value_bytes: int,
        *,
        max_record_bytes: int | None = None,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        send_timeout_s: float = 30.0,
        stop: threading.Event | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_value_bytes = max_value_bytes
        # The producer's max_request_size: a frame plus the header headroom (Settings.max_message_bytes).
        self.max_record_bytes = max_record_bytes or max_value_bytes + HEADER_HEADROOM_BYTES
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.send_timeout_s = send_timeout_s
        self.stop = stop or threading.Event()
        self.on_retry = on_retry  # e.g. a Prometheus counter's `inc`
        self.retries = 0  # flush rounds that had to send again
        self._sends: list[_Send] = []
        self._thread: int | None = None

    @classmethod
    def from_settings(
        cls, producer: Any, settings: Settings, stop: threading.Event, on_retry: Callable[[], None] | None = None
    ) -> DeadLetterSink:
        return cls(
            producer,
            settings.dlq_topic,
            settings.max_frame_bytes,
            max_record_bytes=settings.max_message_bytes,
            retry_initial_s=settings.dlq_retry_initial_s,
            retry_max_s=settings.dlq_retry_max_s,
            send_timeout_s=settings.dlq_send_timeout_s,
            stop=stop,
            on_retry=on_retry,
        )

    def add(self, record: Any, reason: str) -> None:
        self._check_thread()
        log.warning("dead-letter %s: %s", Source(record.topic, record.partition, record.offset), reason)
        send = _Send(record, reason, fit_dead_letter(record, reason, self.max_value_bytes, self.max_record_bytes))
        # Once a send failed to start (metadata wait timed out, no ACL), the next ones would only fail the
        # same way after blocking as long: they wait for the retry in flush.
        if any(s.future is None for s in self._sends):
            send.error = next(s.error for s in self._sends if s.future is None)
        else:
            self._start(send)
        self._sends.append(send)

    def flush(self) -> None:
        """Wait until every letter is in the DLQ topic, sending failed ones again; raises ShutdownRequested if
        `stop` is set while waiting to retry (the batch then stays uncommitted)."""
        if not self._sends:
            return
        self._check_thread()
        rounds = itertools.count()

        def deliver() -> None:
            if next(rounds):
                self._resend([s for s in self._sends if s.failed])
            self._wait_for_sends()
            self._sends = [s for s in self._sends if not (s.future is not None and s.future.succeeded())]
            if self._sends:
                failed = [s for s in self._sends if s.failed]
                cause = next((s.cause for s in failed), None)
                # kafka-python 3.0.12's idempotent producer can stall for good (it stops sending once a batch it had
                # sent expires): a send in flight far beyond the producer's delivery timeout says so; restart then.
                oldest = max((time.monotonic() - s.started for s in self._sends if not s.failed), default=0.0)
                raise _Undelivered(len(self._sends), len(failed), cause, oldest) from cause

        try:
            retry(
                deliver,
                transient=lambda exc: isinstance(exc, _Undelivered),
                backoff=Backoff(self.retry_initial_s, self.retry_max_s),
                stop=self.stop,
                stopped="stopped while the dead-letter topic was unavailable",
                on_retry=self._retrying,
            )
        except ShutdownRequested:
            self._sends = []
            log.warning("stopped while the dead-letter topic was unavailable: the batch will be replayed")
            raise

    def _retrying(self, undelivered: BaseException, wait_s: float) -> None:
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry()
        log.warning(
            "dead-letter topic %s: %s; batch held, offsets not committed, retry in %.1fs",
            self.topic,
            undelivered,
            wait_s,
        )

    def _start(self, send: _Send) -> None:
        from kafka.errors import KafkaError

        letter = send.letter
        try:
            send.started = time.monotonic()
            send.future = self.producer.send(self.topic, key=letter.key, value=letter.value, headers=letter.headers)
            send.error = None
        except (KafkaError, ValueError) as exc:  # metadata timeout, no ACL, invalid topic name, size check
            send.future, send.error = None, exc

    def _resend(self, failed: list[_Send]) -> None:
        from kafka.errors import MessageSizeTooLargeError

        for send in failed:
            if isinstance(send.cause, MessageSizeTooLargeError):
                # The broker or topic allows less than the producer: retrying the same bytes would never pass.
                send.letter = fit_dead_letter(
                    send.record, send.reason, self.max_value_bytes, self.max_record_bytes, strip=True
                )
            self._start(send)
            if send.future is None:
                break  # the rest would block and fail the same way: next round

    def _wait_for_sends(self) -> None:
        """Wait up to send_timeout_s for the sends in flight; stop once `stop` is set and a send is slow."""
        from kafka.errors import KafkaError

        deadline = time.monotonic() + self.send_timeout_s
        for send in self._sends:
            while send.future is not None and not send.future.is_done:
                left = deadline - time.monotonic()
                if left <= 0 or self.stop.is_set():
                    return
                # A timeout of this slice, or the send's error, which the caller reads off the future.
                with contextlib.suppress(KafkaError):
                    send.future.get(timeout=min(left, WAIT_SLICE_S))

    def _check_thread(self) -> None:
        current = threading.get_ident()
        if self._thread is None:
            self._thread = current
        elif self._thread != current:
            raise RuntimeError("a DeadLetterSink is used by one thread only: build one per thread")
