"""The ONNX contract's metadata: what `training.export` embeds in a model file and what the runtime reads back.

Every value is stored as a string in the model's `metadata_props`; composite values are JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import MetadataError
from pipeline.preprocess import RESIZE_MODES, InputSpec

FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAMES = ("reconstruction", "anomaly_map", "score")
MODEL_KINDS = ("image", "sensor")
NORMALIZATION = "x/255"  # the runtime scales uint8 to [0, 1]; the graph does nothing more


@dataclass(frozen=True)
class ScoreStats:
    """Summary of scores on the normal validation images the thresholds were calibrated from."""

    n: int
    mean: float
    std: float
    quantiles: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the line runtime needs to run a model and judge its output."""

    model_name: str
    model_version: str
    architecture: str
    kind: str
    input_size: int
    input_channels: int
    resize_mode: str
    image_threshold: float
    pixel_threshold: float
    image_score_stats: ScoreStats
    pixel_score_stats: ScoreStats
    train_data_digest: str
    created_at: str
    format_version: int = FORMAT_VERSION
    input_dtype: str = "float32"
    normalization: str = NORMALIZATION
    training_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise MetadataError("format_version", f"this runtime reads {FORMAT_VERSION}, got {self.format_version}")
        if self.kind not in MODEL_KINDS:
            raise MetadataError("kind", f"must be one of {MODEL_KINDS}, got {self.kind!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise MetadataError("resize_mode", f"must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.input_channels not in (1, 3):
            raise MetadataError("input_channels", f"must be 1 or 3, got {self.input_channels}")
        if self.input_size < 16:
            raise MetadataError("input_size", f"must be >= 16, got {self.input_size}")
        if self.input_dtype != "float32":
            raise MetadataError("input_dtype", f"only float32 is supported, got {self.input_dtype!r}")
        if self.normalization != NORMALIZATION:
            raise MetadataError("normalization", f"only {NORMALIZATION!r} is supported, got {self.normalization!r}")
        for name in ("image_threshold", "pixel_threshold"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise MetadataError(name, f"must be a finite number, got {value}")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, channels=self.input_channels, resize_mode=self.resize_mode)  # type: ignore[arg-type]

    def to_props(self) -> dict[str, str]:
        """Flatten into the string map stored in the ONNX file's metadata_props."""
        props: dict[str, str] = {}
        for key, value in asdict(self).items():
            props[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        """Parse and validate the metadata_props of a LineGuard model."""
        if "format_version" not in props:
            raise MetadataError("format_version", "missing: not a LineGuard model")
        values: dict[str, Any] = {}
        for name, kind in _FIELD_TYPES.items():
            if name not in props:
                if name in _OPTIONAL_FIELDS:
                    continue
                raise MetadataError(name, "missing")
            raw = props[name]
            try:
                values[name] = raw if kind is str else kind(json.loads(raw))
            except (ValueError, TypeError) as exc:
                raise MetadataError(name, f"unreadable value {raw[:80]!r}") from exc
        for name in ("image_score_stats", "pixel_score_stats"):
            try:
                values[name] = ScoreStats(**values[name])
            except TypeError as exc:
                raise MetadataError(name, f"bad statistics: {exc}") from exc
        return cls(**values)

    def with_thresholds(self, image_threshold: float, pixel_threshold: float) -> ModelMetadata:
        """A copy with overridden thresholds (set after export, without re-exporting)."""
        data = asdict(self)
        data.update(image_threshold=float(image_threshold), pixel_threshold=float(pixel_threshold))
        data["image_score_stats"] = self.image_score_stats
        data["pixel_score_stats"] = self.pixel_score_stats
        return ModelMetadata(**data)


_FIELD_TYPES: dict[str, Any] = {
    "model_name": str,
    "model_version": str,
    "architecture": str,
    "kind": str,
    "input_size": int,
    "input_channels": int,
    "resize_mode": str,
    "image_threshold": float,
    "pixel_threshold": float,
    "image_score_stats": dict,
    "pixel_score_stats": dict,
    "train_data_digest": str,
    "created_at": str,
    "format_version": int,
    "input_dtype": str,
    "normalization": str,
    "training_config": dict,
}
_OPTIONAL_FIELDS = frozenset({"training_config"})
