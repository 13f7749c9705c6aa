"""The ONNX contract's metadata: what `training.export.contract` embeds in a model file and what the runtime reads back.

Every value is stored as a string in the model's `metadata_props`; composite values are JSON.
Two kinds: `image` (input "image", N x C x S x S in [0, 1]) and `sensor` (input "window", N x C x T of raw
readings, normalised per channel inside the graph; the `sensor` block says which channels, in which order).
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
SENSOR_INPUT_NAME = "window"
# Conditional image models (cvae) take a second input: one int64 condition index per frame, 0 = unknown.
CONDITION_INPUT_NAME = "condition"
UNKNOWN_CONDITION = 0
OUTPUT_NAMES = ("reconstruction", "anomaly_map", "score")
MODEL_KINDS = ("image", "sensor")
NORMALIZATION = "x/255"  # the runtime scales uint8 to [0, 1]; the graph does nothing more
# Sensor windows go in as raw readings: the graph subtracts channel_mean and divides by channel_std itself, so a
# model never depends on the runtime repeating its training statistics; the block keeps them for humans and checks.
SENSOR_NORMALIZATION = "channel-zscore-in-graph"
SENSOR_RESIZE_MODE = "none"


@dataclass(frozen=True)
class ScoreStats:
    """Summary of scores on the normal validation images the thresholds were calibrated from."""

    n: int
    mean: float
    std: float
    quantiles: dict[str, float] = field(default_factory=dict)


SENSOR_LEVEL_STATISTICS = ("mean", "median")
SENSOR_CALENDAR_KINDS = ("day", "week")
SENSOR_POINT_RULES = ("all-windows", "row-mean")


@dataclass(frozen=True)
class SensorSpec:
    """The `sensor` block of a sensor model: its channels in input order, its window and its training statistics.

    `level_free_channels` are scored on their shape within a window, not their level: the graph removes each
    window's `level_statistic` ("mean", or the "median", robust to a spike) from them (sensors that drift with
    warm-up, ambient or load, declared or found drifting at training).
    `calendar`: periods ("day", "week") whose phase the runtime appends as input channels after the sensor channels
    (pipeline.sensors.timefeatures, from each reading's timestamp). `period_samples`: the dominant period found in the
    training data (the default window length was chosen from it), None when none was measured or found.
    `point_rule`: how a row is judged from the stride-1 windows that cover it, against the window threshold:
    "row-mean" (their mean score above it) or "all-windows" (every one above it: SKAB's notebook rule, and models
    before the field). Evaluation judges rows by it; the line judges windows.
    `adapt_rows`: 0, or the number of first rows of each run (a recording, or a stretch after a gap) whose per-channel
    median and std the run's readings are re-expressed against before the graph (pipeline.sensors.adapt); those rows
    are not judged. Models before the field: 0.
    """

    channels: tuple[str, ...]
    window_length: int
    window_stride: int
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    sample_rate_hz: float | None = None
    level_free_channels: tuple[str, ...] = ()
    level_statistic: str = "mean"
    calendar: tuple[str, ...] = ()
    period_samples: int | None = None
    point_rule: str = "all-windows"
    adapt_rows: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "calendar", tuple(self.calendar))
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "channel_mean", tuple(float(v) for v in self.channel_mean))
        object.__setattr__(self, "channel_std", tuple(float(v) for v in self.channel_std))
        object.__setattr__(self, "level_free_channels", tuple(self.level_free_channels))
        names = self.channels
        if not names or any(not isinstance(n, str) or not n.strip() or "," in n for n in names):
            raise MetadataError("sensor.channels", f"need non-empty names without commas, got {list(names)!r}")
        if len(set(names)) != len(names):
            raise MetadataError("sensor.channels", f"names must be unique, got {list(names)!r}")
        if self.window_length < 2:
            raise MetadataError("sensor.window_length", f"must be >= 2, got {self.window_length}")
        if not 1 <= self.window_stride <= self.window_length:
            raise MetadataError(
                "sensor.window_stride", f"must be in 1..window_length ({self.window_length}), got {self.window_stride}"
            )
        for name in ("channel_mean", "channel_std"):
            values = getattr(self, name)
            if len(values) != len(names) or not all(math.isfinite(v) for v in values):
                raise MetadataError(f"sensor.{name}", f"need {len(names)} finite numbers, got {list(values)!r}")
        if any(v <= 0 for v in self.channel_std):
            raise MetadataError("sensor.channel_std", f"must be > 0, got {list(self.channel_std)!r}")
        rate = self.sample_rate_hz
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise MetadataError("sensor.sample_rate_hz", f"must be null or a positive number, got {rate}")
        unknown = sorted(set(self.level_free_channels) - set(names))
        if unknown or len(set(self.level_free_channels)) != len(self.level_free_channels):
            raise MetadataError(
                "sensor.level_free_channels",
                f"must be distinct names of channels {list(names)!r}, got {list(self.level_free_channels)!r}",
            )
        if self.level_statistic not in SENSOR_LEVEL_STATISTICS:
            raise MetadataError(
                "sensor.level_statistic", f"must be one of {SENSOR_LEVEL_STATISTICS}, got {self.level_statistic!r}"
            )
        if not set(self.calendar) <= set(SENSOR_CALENDAR_KINDS) or len(set(self.calendar)) != len(self.calendar):
            raise MetadataError(
                "sensor.calendar", f"must be distinct names from {SENSOR_CALENDAR_KINDS}, got {list(self.calendar)!r}"
            )
        period = self.period_samples
        if period is not None and not (isinstance(period, int) and period >= 2):
            raise MetadataError("sensor.period_samples", f"must be null or an integer >= 2, got {period!r}")
        if self.point_rule not in SENSOR_POINT_RULES:
            raise MetadataError("sensor.point_rule", f"must be one of {SENSOR_POINT_RULES}, got {self.point_rule!r}")
        adapt = self.adapt_rows
        if not (isinstance(adapt, int) and not isinstance(adapt, bool) and (adapt == 0 or adapt >= 2)):
            raise MetadataError("sensor.adapt_rows", f"must be 0 (off) or an integer >= 2, got {adapt!r}")

    @property
    def input_channels(self) -> int:
        """Channels of the graph's input: the sensors, then two per calendar period."""
        return len(self.channels) + 2 * len(self.calendar)

    @classmethod
    def from_json(cls, data: Any) -> SensorSpec:
        try:
            return cls(
                channels=tuple(data["channels"]),
                window_length=int(data["window_length"]),
                window_stride=int(data["window_stride"]),
                channel_mean=tuple(data["channel_mean"]),
                channel_std=tuple(data["channel_std"]),
                sample_rate_hz=None if data.get("sample_rate_hz") is None else float(data["sample_rate_hz"]),
                level_free_channels=tuple(data.get("level_free_channels", ())),
                level_statistic=str(data.get("level_statistic", "mean")),
                calendar=tuple(data.get("calendar", ())),
                period_samples=None if data.get("period_samples") is None else int(data["period_samples"]),
                point_rule=str(data.get("point_rule", "all-windows")),
                adapt_rows=data.get("adapt_rows", 0),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetadataError("sensor", f"bad sensor block: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class ConditionSpec:
    """The `condition` block of a conditional model: where the runtime reads a frame's condition and its vocabulary.

    `values[i]` is condition index i + 1; index 0 is the unconditional path the model was trained on by
    condition dropout, which every value not in the vocabulary falls back to.
    """

    source: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if self.source != "camera-id" and not (self.source.startswith("header:") and len(self.source) > 7):
            raise MetadataError("condition.source", f"must be 'camera-id' or 'header:<name>', got {self.source!r}")
        if any(not isinstance(v, str) or not v for v in self.values) or len(set(self.values)) != len(self.values):
            raise MetadataError("condition.values", f"need unique non-empty strings, got {list(self.values)!r}")

    @property
    def header(self) -> str | None:
        """The Kafka header the condition comes from; None: the camera id."""
        return self.source.removeprefix("header:") if self.source.startswith("header:") else None

    @classmethod
    def from_json(cls, data: Any) -> ConditionSpec:
        try:
            return cls(source=str(data["source"]), values=tuple(data["values"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise MetadataError("condition", f"bad condition block: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class FalseAlarmSpec:
    """How the image (or window) threshold was set: the false-alarm budget asked for and what the tail model
    of held-out normal scores expects at the threshold, with its interval
    (training.evaluation.calibrate.budget_threshold).

    The runtime compares the rate it observes on frames judged normal with `expected_rate` (drift).
    """

    rate: float
    expected_rate: float
    interval_low: float
    interval_high: float
    n_normals: int
    method: str
    warning: str | None = None

    def __post_init__(self) -> None:
        for name in ("rate", "expected_rate", "interval_low", "interval_high"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise MetadataError(f"false_alarm.{name}", f"must be a number in [0, 1], got {value!r}")
        if not 0.0 < self.rate < 1.0:
            raise MetadataError("false_alarm.rate", f"must be in (0, 1), got {self.rate!r}")
        if self.interval_low > self.interval_high:
            raise MetadataError("false_alarm.interval_low", "must not exceed interval_high")
        if not isinstance(self.n_normals, int) or self.n_normals < 1:
            raise MetadataError("false_alarm.n_normals", f"must be a positive integer, got {self.n_normals!r}")
        if self.method not in FALSE_ALARM_METHODS:
            raise MetadataError("false_alarm.method", f"must be one of {FALSE_ALARM_METHODS}, got {self.method!r}")

    @classmethod
    def from_json(cls, data: Any) -> FalseAlarmSpec:
        try:
            return cls(
                rate=float(data["rate"]),
                expected_rate=float(data["expected_rate"]),
                interval_low=float(data["interval_low"]),
                interval_high=float(data["interval_high"]),
                n_normals=int(data["n_normals"]),
                method=str(data["method"]),
                warning=None if data.get("warning") is None else str(data["warning"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetadataError("false_alarm", f"bad false_alarm block: {type(exc).__name__}: {exc}") from exc


# gpd-tail: peaks over threshold with a generalised Pareto fit; empirical: enough normals to read the quantile;
# gaussian: too few normals for a tail fit, mean + z * std (the warning says how many are needed)
FALSE_ALARM_METHODS = ("gpd-tail", "empirical", "gaussian")


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
    # Sensor models only; image models leave it None and their metadata_props stay exactly as before.
    sensor: SensorSpec | None = None
    # Conditional image models only (input "condition"); None keeps the props of every other model unchanged.
    condition: ConditionSpec | None = None
    # How the threshold came from a false-alarm budget; None for models calibrated before budgets existed.
    false_alarm: FalseAlarmSpec | None = None

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise MetadataError("format_version", f"this runtime reads {FORMAT_VERSION}, got {self.format_version}")
        if self.kind not in MODEL_KINDS:
            raise MetadataError("kind", f"must be one of {MODEL_KINDS}, got {self.kind!r}")
        if self.input_dtype != "float32":
            raise MetadataError("input_dtype", f"only float32 is supported, got {self.input_dtype!r}")
        for name in ("image_threshold", "pixel_threshold"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise MetadataError(name, f"must be a finite number, got {value}")
        if self.kind == "sensor":
            self._check_sensor()
        else:
            self._check_image()

    def _check_sensor(self) -> None:
        spec = self.sensor
        if spec is None:
            raise MetadataError("sensor", "missing: a sensor model needs its sensor block")
        if self.input_channels != spec.input_channels:
            raise MetadataError(
                "input_channels", f"must equal the {spec.input_channels} input channels (sensors, then calendar)"
            )
        if self.condition is not None:
            raise MetadataError("condition", "only image models take a condition")
        if self.input_size != spec.window_length:
            raise MetadataError("input_size", f"must equal sensor.window_length {spec.window_length}")
        if self.resize_mode != SENSOR_RESIZE_MODE:
            raise MetadataError("resize_mode", f"must be {SENSOR_RESIZE_MODE!r} for a sensor model")
        if self.normalization != SENSOR_NORMALIZATION:
            raise MetadataError("normalization", f"must be {SENSOR_NORMALIZATION!r} for a sensor model")

    def _check_image(self) -> None:
        if self.sensor is not None:
            raise MetadataError("sensor", "only sensor models carry a sensor block")
        if self.resize_mode not in RESIZE_MODES:
            raise MetadataError("resize_mode", f"must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.input_channels not in (1, 3):
            raise MetadataError("input_channels", f"must be 1 or 3, got {self.input_channels}")
        if self.input_size < 16:
            raise MetadataError("input_size", f"must be >= 16, got {self.input_size}")
        if self.normalization != NORMALIZATION:
            raise MetadataError("normalization", f"only {NORMALIZATION!r} is supported, got {self.normalization!r}")

    @property
    def input_name(self) -> str:
        return SENSOR_INPUT_NAME if self.kind == "sensor" else INPUT_NAME

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, channels=self.input_channels, resize_mode=self.resize_mode)  # type: ignore[arg-type]

    def to_props(self) -> dict[str, str]:
        """Flatten into the string map stored in the ONNX file's metadata_props."""
        props: dict[str, str] = {}
        for key, value in asdict(self).items():
            if key in _OPTIONAL_BLOCKS and value is None:
                continue
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
        if "sensor" in values:
            values["sensor"] = SensorSpec.from_json(values["sensor"])
        if "condition" in values:
            values["condition"] = ConditionSpec.from_json(values["condition"])
        if "false_alarm" in values:
            values["false_alarm"] = FalseAlarmSpec.from_json(values["false_alarm"])
        return cls(**values)

    def with_thresholds(
        self, image_threshold: float, pixel_threshold: float, false_alarm: FalseAlarmSpec | None = None
    ) -> ModelMetadata:
        """A copy with overridden thresholds (set after export, without re-exporting).

        The false-alarm block describes the image threshold: a new one keeps none unless its own is given.
        """
        if false_alarm is None and image_threshold == self.image_threshold:
            false_alarm = self.false_alarm
        data = asdict(self)
        data.update(image_threshold=float(image_threshold), pixel_threshold=float(pixel_threshold))
        data["image_score_stats"] = self.image_score_stats
        data["pixel_score_stats"] = self.pixel_score_stats
        data["sensor"] = self.sensor
        data["condition"] = self.condition
        data["false_alarm"] = false_alarm
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
    "sensor": dict,
    "condition": dict,
    "false_alarm": dict,
}
# Blocks that only some models carry: absent from metadata_props when None, so older files keep their props.
_OPTIONAL_BLOCKS = ("sensor", "condition", "false_alarm")
_OPTIONAL_FIELDS = frozenset({"training_config", *_OPTIONAL_BLOCKS})
