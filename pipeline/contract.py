"""The ONNX contract's metadata: what `training.export.contract` embeds in a model file and what the runtime reads back.

Every value is stored as a string in the model's `metadata_props`; composite values are JSON. The classes below are
pydantic dataclasses: each field's type, bounds and meaning are written once, on the field; a bad value is a
MetadataError naming the field (`sensor.window_length`), and docs/contract.schema.json is generated from them
(`python -m pipeline.dev.contract_schema`).
Two kinds: `image` (input "image", N x C x S x S in [0, 1]) and `sensor` (input "window", N x C x T of raw
readings, normalised per channel inside the graph; the `sensor` block says which channels, in which order).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from pipeline.errors import MetadataError
from pipeline.preprocess import RESIZE_MODES, InputSpec

FORMAT_VERSION = 1
INPUT_NAME = "image"
SENSOR_INPUT_NAME = "window"
# Conditional image models (cvae) take a second input: one int64 condition index per frame, 0 = unknown.
CONDITION_INPUT_NAME = "condition"
UNKNOWN_CONDITION = 0
OUTPUT_NAMES = ("reconstruction", "anomaly_map", "score")
NORMALIZATION = "x/255"  # the runtime scales uint8 to [0, 1]; the graph does nothing more
# Sensor windows go in as raw readings: the graph subtracts channel_mean and divides by channel_std itself, so a
# model never depends on the runtime repeating its training statistics; the block keeps them for humans and checks.
SENSOR_NORMALIZATION = "channel-zscore-in-graph"
SENSOR_RESIZE_MODE = "none"


# What a sensor model may declare; training's configs check their own fields against these.
LevelStatistic = Literal["mean", "median"]
CalendarKind = Literal["day", "week"]
PointRule = Literal["all-windows", "row-mean"]
# gpd-tail: peaks over threshold with a generalised Pareto fit; empirical: enough normals to read the quantile;
# gaussian: too few normals for a tail fit, mean + z * std (the warning says how many are needed)
FalseAlarmMethod = Literal["gpd-tail", "empirical", "gaussian"]
ModelKind = Literal["image", "sensor"]
WeightPrecision = Literal["fp32", "int8", "fp16"]
SENSOR_LEVEL_STATISTICS: tuple[str, ...] = get_args(LevelStatistic)
SENSOR_CALENDAR_KINDS: tuple[str, ...] = get_args(CalendarKind)
SENSOR_POINT_RULES: tuple[str, ...] = get_args(PointRule)
FALSE_ALARM_METHODS: tuple[str, ...] = get_args(FalseAlarmMethod)
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
WEIGHT_PRECISIONS: tuple[str, ...] = get_args(WeightPrecision)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _distinct_periods(periods: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(periods)) != len(periods):
        raise ValueError(f"must be distinct names from {SENSOR_CALENDAR_KINDS}, got {list(periods)!r}")
    return periods


def _off_or_two_rows(rows: int) -> int:
    if rows == 1:
        raise ValueError(f"must be 0 (off) or an integer >= 2, got {rows!r}")
    return rows


# Shared by the sensor block of the metadata and the training configuration that writes it.
CalendarPeriods = Annotated[tuple[CalendarKind, ...], AfterValidator(_distinct_periods)]
AdaptRows = Annotated[int, Field(ge=0), AfterValidator(_off_or_two_rows)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _metadata_error(exc: ValidationError, block: str, names: list[str]) -> MetadataError:
    """The first of pydantic's errors as a MetadataError naming the field as the props do (`sensor.window_length`);
    `names`: the fields in order, for an argument given by position."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    if loc and isinstance(error["loc"][0], int):
        loc[0] = names[int(loc[0])]
    inner = " ".join(f"item {part}" if isinstance(part, int) else part for part in error["loc"][1:])
    field_name = ".".join(part for part in (block, *loc[:1]) if part) or "metadata"
    if error["type"] == "missing":
        reason = "missing"
    elif error["type"] == "value_error":
        reason = str(error["ctx"]["error"])
    else:
        reason = f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {error['input']!r}"
    return MetadataError(field_name, f"{inner}: {reason}" if inner else reason)


class _Block:
    """What the contract's classes share: pydantic's errors come out as MetadataError, named under `_block`.

    A MetadataError raised by a validator passes through pydantic as it is (it is not a ValueError), so a block
    inside the metadata keeps its own field names."""

    _block: ClassVar[str] = ""

    @model_validator(mode="wrap")
    @classmethod
    def _as_metadata_error(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise _metadata_error(exc, cls._block, [item.name for item in fields(cls)]) from None

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Validate a block read back from its JSON (a dict); MetadataError names the bad field."""
        return TypeAdapter(cls).validate_python(data)


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ScoreStats:
    """Summary of scores on the normal validation images the thresholds were calibrated from."""

    n: int = Field(description="how many normal validation scores")
    mean: float = Field(description="their mean")
    std: float = Field(description="their standard deviation")
    quantiles: dict[str, float] = Field(default_factory=dict, description='quantiles by level, e.g. {"0.99": 0.05}')


@dataclass(frozen=True)
class SensorSpec(_Block):
    """The `sensor` block of a sensor model: its channels in input order, its window and its training statistics."""

    _block: ClassVar[str] = "sensor"

    channels: tuple[str, ...] = Field(
        description="sensor names in the input's channel order: unique, non-empty, no commas (the wire format's "
        "channels header lists them comma-separated)"
    )
    window_length: int = Field(ge=2, description="samples per window: the input's T")
    window_stride: int = Field(description="samples between window starts on the line, 1..window_length")
    channel_mean: tuple[FiniteFloat, ...] = Field(
        description="training mean per channel; the graph subtracts it itself (kept for humans and checks)"
    )
    channel_std: tuple[Annotated[float, Field(gt=0.0, allow_inf_nan=False)], ...] = Field(
        description="training standard deviation per channel, > 0; the graph divides by it itself"
    )
    sample_rate_hz: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = Field(
        default=None, description="readings per second in training, null when unknown"
    )
    level_free_channels: tuple[str, ...] = Field(
        default=(),
        description="channels scored on their shape within a window, not their level: the graph removes each "
        "window's level_statistic from them (sensors that drift with warm-up, ambient or load)",
    )
    level_statistic: LevelStatistic = Field(
        default="mean",
        description="what is removed from level-free channels: the mean, or the median (robust to a spike)",
    )
    calendar: CalendarPeriods = Field(
        default=(),
        description="periods whose phase the runtime appends as two input channels each, after the sensor channels "
        "(pipeline.sensors.timefeatures, from each reading's timestamp)",
    )
    period_samples: Annotated[int, Field(ge=2)] | None = Field(
        default=None,
        description="the dominant period found in the training data (the default window length was chosen from "
        "it); null when none was measured or found",
    )
    point_rule: PointRule = Field(
        default="all-windows",
        description="how a row is judged from the stride-1 windows that cover it, against the window threshold: "
        "row-mean (their mean score above it) or all-windows (every one above it: SKAB's notebook rule, and models "
        "before the field). Evaluation judges rows by it; the line judges windows",
    )
    adapt_rows: AdaptRows = Field(
        default=0,
        strict=True,
        description="0, or the number (>= 2) of first rows of each run (a recording, or a stretch after a gap) whose "
        "per-channel median and std the run's readings are re-expressed against before the graph "
        "(pipeline.sensors.adapt); those rows are not judged. Models before the field: 0",
    )

    @field_validator("channels")
    @classmethod
    def _channels(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names or any(not n.strip() or "," in n for n in names):
            raise ValueError(f"need non-empty names without commas, got {list(names)!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {list(names)!r}")
        return names

    @field_validator("window_stride")
    @classmethod
    def _stride(cls, stride: int, info: ValidationInfo) -> int:
        length = info.data.get("window_length")
        if length is not None and not 1 <= stride <= length:
            raise ValueError(f"must be in 1..window_length ({length}), got {stride}")
        return stride

    @field_validator("channel_mean", "channel_std")
    @classmethod
    def _per_channel(cls, values: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        names = info.data.get("channels")
        if names is not None and len(values) != len(names):
            raise ValueError(f"need {len(names)} finite numbers, got {list(values)!r}")
        return values

    @field_validator("level_free_channels")
    @classmethod
    def _level_free(cls, chosen: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        names = info.data.get("channels") or ()
        if set(chosen) - set(names) or len(set(chosen)) != len(chosen):
            raise ValueError(f"must be distinct names of channels {list(names)!r}, got {list(chosen)!r}")
        return chosen

    @property
    def input_channels(self) -> int:
        """Channels of the graph's input: the sensors, then two per calendar period."""
        return len(self.channels) + 2 * len(self.calendar)


@dataclass(frozen=True)
class ConditionSpec(_Block):
    """The `condition` block of a conditional model: where the runtime reads a frame's condition and its vocabulary.

    `values[i]` is condition index i + 1; index 0 is the unconditional path the model was trained on by
    condition dropout, which every value not in the vocabulary falls back to.
    """

    _block: ClassVar[str] = "condition"

    source: str = Field(description="where a frame's condition comes from: 'camera-id' or 'header:<name>'")
    values: tuple[str, ...] = Field(description="the vocabulary, unique non-empty strings; values[i] is index i + 1")

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        if source != "camera-id" and not (source.startswith("header:") and len(source) > 7):
            raise ValueError(f"must be 'camera-id' or 'header:<name>', got {source!r}")
        return source

    @field_validator("values")
    @classmethod
    def _values(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if any(not v for v in values) or len(set(values)) != len(values):
            raise ValueError(f"need unique non-empty strings, got {list(values)!r}")
        return values

    @property
    def header(self) -> str | None:
        """The Kafka header the condition comes from; None: the camera id."""
        return self.source.removeprefix("header:") if self.source.startswith("header:") else None


@dataclass(frozen=True)
class FalseAlarmSpec(_Block):
    """How the image (or window) threshold was set: the false-alarm budget asked for and what the tail model
    of held-out normal scores expects at the threshold, with its interval
    (training.evaluation.calibrate.budget_threshold).

    The runtime compares the rate it observes on frames judged normal with `expected_rate` (drift).
    """

    _block: ClassVar[str] = "false_alarm"

    rate: float = Field(gt=0.0, lt=1.0, allow_inf_nan=False, description="the budget: false alarms per frame asked for")
    expected_rate: Probability = Field(description="the rate the tail model expects at the threshold")
    interval_low: Probability = Field(description="lower end of the expected rate's interval")
    interval_high: Probability = Field(description="upper end of the expected rate's interval")
    n_normals: int = Field(ge=1, description="held-out normal scores the threshold was set from")
    method: FalseAlarmMethod = Field(
        description="gpd-tail: a generalised Pareto fit over a high threshold; empirical: the quantile read from "
        "enough normals; gaussian: too few normals for a tail fit, mean + z * std"
    )
    warning: str | None = Field(default=None, description="what to be wary of (e.g. how many normals are needed)")

    @model_validator(mode="after")
    def _interval(self) -> Self:
        if self.interval_low > self.interval_high:
            raise MetadataError("false_alarm.interval_low", "must not exceed interval_high")
        return self


@dataclass(frozen=True)
class ModelMetadata(_Block):
    """Everything the line runtime needs to run a model and judge its output."""

    model_name: str = Field(description="the model's name; the registry keeps versions per name")
    model_version: str = Field(description="its version")
    architecture: str = Field(description="the registry name of the network (training.models)")
    kind: ModelKind = Field(description="image: input 'image', N x C x S x S; sensor: input 'window', N x C x T")
    input_size: int = Field(description="image: S, the square side (>= 16); sensor: T, sensor.window_length")
    input_channels: int = Field(description="image: 1 (gray) or 3 (RGB); sensor: the sensors, then two per period")
    resize_mode: str = Field(description=f"image: one of {RESIZE_MODES}; sensor: {SENSOR_RESIZE_MODE!r}")
    image_threshold: FiniteFloat = Field(description="score above which a frame (or window) is a defect")
    pixel_threshold: FiniteFloat = Field(description="anomaly-map value above which a pixel belongs to a region")
    image_score_stats: ScoreStats = Field(description="normal validation image scores the threshold came from")
    pixel_score_stats: ScoreStats = Field(description="normal validation pixel scores the threshold came from")
    train_data_digest: str = Field(description="digest of the training data")
    created_at: str = Field(description="when the file was exported, ISO 8601")
    format_version: int = Field(default=FORMAT_VERSION, description="the contract's version this runtime reads")
    input_dtype: Literal["float32"] = Field(default="float32", description="the input tensor's type")
    # Whatever the weights' precision, the inputs and the score stay float32, so the runtime feeds every file alike.
    precision: WeightPrecision = Field(
        default="fp32",
        description=(
            "the graph's arithmetic: fp32 (as exported), int8 (`lineguard quantize`) or fp16 "
            "(`quantize --precision fp16`)"
        ),
    )
    normalization: str = Field(
        default=NORMALIZATION, description=f"image: {NORMALIZATION!r}; sensor: {SENSOR_NORMALIZATION!r}"
    )
    training_config: dict[str, Any] = Field(default_factory=dict, description="the run's configuration, for retraining")
    # Sensor models only; image models leave it None and their metadata_props stay exactly as before.
    sensor: SensorSpec | None = Field(default=None, description="sensor models only")
    # Conditional image models only (input "condition"); None keeps the props of every other model unchanged.
    condition: ConditionSpec | None = Field(default=None, description="conditional image models only")
    # How the threshold came from a false-alarm budget; None for models calibrated before budgets existed.
    false_alarm: FalseAlarmSpec | None = Field(
        default=None, description="how the threshold came from a false-alarm budget; absent in older models"
    )

    @field_validator("format_version")
    @classmethod
    def _format_version(cls, version: int) -> int:
        if version != FORMAT_VERSION:
            raise ValueError(f"this runtime reads {FORMAT_VERSION}, got {version}")
        return version

    @model_validator(mode="after")
    def _kind(self) -> Self:
        if self.kind == "sensor":
            self._check_sensor()
        else:
            self._check_image()
        return self

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
            if key in OPTIONAL_BLOCKS and value is None:
                continue
            props[key] = value if key in TEXT_PROPS else json.dumps(value, sort_keys=True)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        """Parse and validate the metadata_props of a LineGuard model."""
        if "format_version" not in props:
            raise MetadataError("format_version", "missing: not a LineGuard model")
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name not in props:
                continue  # a required one is refused as missing by the validation
            raw = props[item.name]
            try:
                values[item.name] = raw if item.name in TEXT_PROPS else json.loads(raw)
            except ValueError as exc:
                raise MetadataError(item.name, f"unreadable value {raw[:80]!r}") from exc
        return cls.from_json(values)

    def with_thresholds(
        self, image_threshold: float, pixel_threshold: float, false_alarm: FalseAlarmSpec | None = None
    ) -> ModelMetadata:
        """A copy with overridden thresholds (set after export, without re-exporting).

        The false-alarm block describes the image threshold: a new one keeps none unless its own is given.
        """
        if false_alarm is None and image_threshold == self.image_threshold:
            false_alarm = self.false_alarm
        return replace(
            self,
            image_threshold=float(image_threshold),
            pixel_threshold=float(pixel_threshold),
            false_alarm=false_alarm,
        )


# The props stored as they are; every other value is JSON.
TEXT_PROPS = frozenset(
    (
        "model_name",
        "model_version",
        "architecture",
        "kind",
        "resize_mode",
        "train_data_digest",
        "created_at",
        "input_dtype",
        "normalization",
        "precision",
    )
)
# Blocks that only some models carry: absent from metadata_props when None, so older files keep their props.
OPTIONAL_BLOCKS = ("sensor", "condition", "false_alarm")


def contract_schema() -> dict[str, Any]:
    """The JSON schema of a model's metadata (docs/contract.schema.json): each field's type, bounds and meaning."""
    schema = TypeAdapter(ModelMetadata).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LineGuard ONNX model metadata"
    schema["description"] = (
        f"The metadata_props of a LineGuard .onnx file (format_version {FORMAT_VERSION}), as pipeline/contract.py "
        "validates them. Every value is stored as a string: the text fields as they are, every other one as its "
        "JSON. Generated by `python -m pipeline.dev.contract_schema`; do not edit."
    )
    return schema
