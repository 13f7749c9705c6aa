"""Errors raised by the training package; each names what is wrong and where."""

from __future__ import annotations

from pipeline.errors import LineGuardError


class TrainingError(LineGuardError):
    """Base class for training-side errors."""


class DatasetError(TrainingError):
    """A data folder that is missing, empty, unreadable or inconsistent."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ConfigError(TrainingError):
    """A configuration field with a bad value."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"config field {field!r} = {value!r}: {reason}")


class UnknownModelError(TrainingError):
    """A model name that is not in the registry."""

    def __init__(self, name: str, valid: list[str]) -> None:
        self.name = name
        super().__init__(f"unknown model {name!r}; valid names: {', '.join(valid)}")


class ExportParityError(TrainingError):
    """The exported ONNX graph disagrees with the torch model beyond tolerance."""

    def __init__(self, output: str, max_abs_diff: float, tolerance: float) -> None:
        self.output = output
        self.max_abs_diff = max_abs_diff
        super().__init__(f"ONNX output {output!r} differs from torch by {max_abs_diff:.2e} (> {tolerance:.0e})")


class BackboneError(TrainingError):
    """A pretrained backbone that is unknown, not installed or whose weights do not fit."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"backbone {name!r}: {reason}")
