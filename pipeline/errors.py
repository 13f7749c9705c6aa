"""Errors raised by the line runtime; each carries the data a log line or a DLQ header needs."""

from __future__ import annotations


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
    """A setting that is missing or inconsistent for the command being run."""


class NotFoundError(LineGuardError):
    """No row with that id."""


class ShutdownRequested(LineGuardError):
    """Stop was requested while a batch could not be written; its offsets stay uncommitted."""
