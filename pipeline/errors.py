"""Errors raised by the line runtime; each carries the data a log line or a DLQ header needs."""

from __future__ import annotations

from typing import overload


class LineGuardError(Exception):
    """Base class for every error LineGuard raises on purpose."""


class ImageDecodeError(LineGuardError):
    """Bytes that are not a decodable image, or an image of the wrong shape for the model."""

    def __init__(self, reason: str, source: str = "") -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


class ModelLoadError(LineGuardError):
    """A model file that is missing, corrupt or not a LineGuard model."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot load model {path}: {reason}")


class MetadataError(LineGuardError):
    """A model whose embedded metadata is missing a field or has a bad value."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"model metadata field {field!r}: {reason}")


class InvalidMessageError(LineGuardError):
    """A Kafka record that breaks the wire format; it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BrokerError(LineGuardError):
    """The embedded broker could not be started or reached."""


class ConfigError(LineGuardError):
    """A setting that is missing or inconsistent for the command being run, or a field of a typed config (training's
    run configs) with a bad value.

    `ConfigError(message)`; `ConfigError(field, value, reason)` names the field and the bad value in its message and
    keeps both (`field` and `value` are None for the first form).
    """

    @overload
    def __init__(self, message: str, /) -> None: ...

    @overload
    def __init__(self, field: str, value: object, reason: str, /) -> None: ...

    def __init__(self, message_or_field: str, value: object = None, reason: str | None = None, /) -> None:
        self.field: str | None = None if reason is None else message_or_field
        self.value = value
        super().__init__(
            message_or_field if reason is None else f"config field {message_or_field!r} = {value!r}: {reason}"
        )


class NotFoundError(LineGuardError):
    """No row with that id."""


class RegistryError(LineGuardError):
    """A model registry operation that cannot go ahead: a version registered with another file, an unreadable
    evaluation report, a forced promotion without a reason."""


class ShutdownRequested(LineGuardError):
    """Stop was requested while a batch could not be written; its offsets stay uncommitted."""


class OffsetsAheadError(LineGuardError):
    """The database's next offset for a partition lies beyond the partition's log end: the topic was recreated or
    the broker lost its data, and consuming from there would skip (or wait for) records never processed."""

    def __init__(self, group_id: str, topic: str, partition: int, stored: int, end: int, others: int = 0) -> None:
        self.group_id = group_id
        self.topic = topic
        self.partition = partition
        self.stored = stored
        self.end = end
        more = f" (and {others} more partitions)" if others else ""
        super().__init__(
            f"{topic}[{partition}]: the database's next offset {stored} for group {group_id!r} is beyond the log end"
            f" {end}{more}: the topic was recreated or the broker lost its data; after checking, delete the group's"
            f" rows (DELETE FROM source_offsets WHERE group_id = '{group_id}' AND topic = '{topic}') and restart"
            " (pipeline/README.md, Delivery)"
        )


class FrameStoreError(LineGuardError):
    """The frame store failed a write; `transient` when a retry may succeed (an outage, not a path or permission)."""

    def __init__(self, url: str, reason: str, transient: bool) -> None:
        self.url = url
        self.transient = transient
        super().__init__(f"frame store {url}: {reason}")


class ForeignFrameURIError(LineGuardError):
    """A defect row names an image outside the configured frame store (another scheme, folder or host, or a path
    that climbs out of it): it is refused, never opened."""

    def __init__(self, uri: str, store_url: str) -> None:
        self.uri = uri
        self.store_url = store_url
        super().__init__(f"stored image URI {uri!r} is not an object of the frame store {store_url}: refused")
