"""Errors raised by the training package; each names what is wrong and where."""

from __future__ import annotations

# One ConfigError for both packages: training's configs raise pipeline's, with the field and the bad value
# (`ConfigError(field, value, reason)`); imported here so that `from training.errors import ConfigError` names it too.
from pipeline.errors import ConfigError, LineGuardError

__all__ = ["BackboneError", "ConfigError", "DatasetError", "ExportParityError", "TrainingError", "UnknownModelError"]


class TrainingError(LineGuardError):
    """Base class for training-side errors."""


class DatasetError(TrainingError):
    """A data folder that is missing, empty, unreadable or inconsistent."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


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
