"""The frozen configuration of one training run: a pydantic dataclass that declares each field's type, bounds and
meaning once; pydantic's errors come out as ConfigError naming the field and the bad value
(`config field 'epochs' = 0: must be >= 1`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from torch import nn

from training.backbone import backbone_names
from training.data.corruptions import CORRUPTIONS
from training.errors import ConfigError
from training.models import (
    AUTO_MODEL,
    DEFAULT_MODEL,
    DEFAULT_SCRATCH_MODEL,
    FEATURE_MODEL_NAMES,
    ModelEntry,
    create_model,
    model_entry,
)
from training.models.blocks import SCORE_MODES
from training.models.family import ImageFamily

NO_BACKBONE = "none"
Contrast = Literal["auto", "on", "off"]
ResizeMode = Literal["stretch", "letterbox"]
Device = Literal["auto", "cpu", "cuda"]


class ConfigErrors:
    """Base of the pydantic config dataclasses: pydantic's first error comes out as a ConfigError naming the field
    and the bad value (config_error); a ConfigError raised by a validator of the config passes as it is."""

    @model_validator(mode="wrap")
    @classmethod
    def _as_config_error(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """pydantic's first error as a ConfigError naming the field and the bad value; a ConfigError raised by a
        check below passes as it is."""
        try:
            return handler(data)
        except ValidationError as exc:
            raise config_error(exc, cls) from None


# The fields whose value must be one of a known set, and where that set comes from (the backbones installed).
KNOWN_CHOICES: dict[str, Callable[[], Sequence[str]]] = {
    "backbone": lambda: [*backbone_names(), NO_BACKBONE],
    "corruption": lambda: CORRUPTIONS,
    "score": lambda: SCORE_MODES,
}


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TrainConfig(ConfigErrors):
    """Everything `train()` needs; defaults are sized for a 2-core CPU and a few minutes.

    Fields left None take the model's defaults (`TrainDefaults` in the registry); `model` None means
    the default model, or the default from-scratch model when `backbone` is "none".
    """

    data_dir: Path = Field(description="MVTec-layout folder (train/good) or a folder of normal images")
    out: Path = Field(description="where the .onnx model is written; its checkpoint <out>.ckpt.pt lies beside it")
    model: str | None = Field(
        default=None,
        description="registered model (training.models), or auto: every feature-space model, the best on the "
        "validation defects kept; None: feature-cae, or cae when backbone is none",
    )
    backbone: str = Field(
        default="efficientnet-lite0",
        description="pretrained backbone of feature-space models (training.backbone); none trains from scratch",
    )
    size: int | None = Field(
        default=None,
        description="square model input in pixels, >= 32 and divisible by size_multiple; None: the model's",
    )
    resize_mode: ResizeMode = Field(default="stretch", description="stretch, or letterbox (keeps the aspect ratio)")
    epochs: int | None = Field(default=None, ge=1, description="the epoch cap of every phase; None: the model's")
    max_minutes: float = Field(
        default=15.0, gt=0, description="a safety net: the epochs decide; a budget that cuts a phase short is a warning"
    )
    batch_size: int | None = Field(
        default=None, ge=2, description="images per step, >= 2 (batch norm needs two samples); None: the model's"
    )
    learning_rate: float | None = Field(
        default=None, gt=0, lt=1, description="peak rate, cosine decay over the budget; None: the model's"
    )
    weight_decay: float = Field(default=1e-5, ge=0, description="AdamW weight decay")
    patience: int = Field(default=15, ge=1, description="epochs without a better validation loss before stopping")
    val_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="share of the normal images held out (best epoch, calibration)"
    )
    seed: int = Field(default=0, description="seeds the split, the initial weights, the batch order and corruptions")
    defect_probability: float = Field(
        default=0.5, ge=0, le=1, description="share of training images corrupted, whatever the corruption"
    )
    corruption: str = Field(
        default="synthetic",
        description="what denoising models learn to undo: one of training.data.corruptions.CORRUPTIONS",
    )
    noise_level: float = Field(
        default=0.1, gt=0, lt=1, description="gaussian sigma, salt-pepper pixel share, mask area share"
    )
    widths: tuple[int, ...] = Field(
        default=(16, 32, 64, 128), description="from-scratch models: encoder widths, each halving the resolution"
    )
    latent_channels: int = Field(default=64, ge=1, description="from-scratch models: bottleneck channels")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="from-scratch models: bottleneck dropout")
    head_width: int = Field(default=8, description="cae: width of the defect-segmentation head")
    # None: enough epochs for RESTORER_STEPS optimiser steps. The anomaly map does not depend on the restorer, and at
    # 224 px one of its epochs costs about four of the map's: a fixed 10 epochs were 45 % of a 14-minute run on
    # magnetic tile's 630 images, while 4 left bottle's 188 with a blurred restoration
    # (training.models.feature_space.fit)
    restorer_epochs: int | None = Field(
        default=None, ge=0, description="feature-space models: the image restorer's epochs; None: RESTORER_STEPS steps"
    )
    contrast: Contrast = Field(
        default="auto",
        description="feature-space models: per-frame contrast normalisation: auto (chosen on the validation "
        "defects), on or off",
    )
    ssim_weight: float = Field(default=1.0, description="weight of the structural (1 - SSIM) loss term")
    segmentation_weight: float = Field(default=1.0, description="cae: weight of the segmentation head's loss")
    kl_weight: float = Field(default=1e-3, ge=0, description="vae, cvae: KL weight against reconstruction")
    kl_warmup_epochs: int = Field(
        default=10, ge=0, description="vae, cvae: epochs over which the KL weight rises from 0 to kl_weight"
    )
    score: str = Field(
        default="reconstruction", description="vae, cvae: the anomaly map, reconstruction or elbo (plus the KL)"
    )
    kl_map_weight: float = Field(default=0.05, ge=0, description="vae, cvae: weight of the KL in the elbo map")
    condition_source: str = Field(
        default="camera-id", description="cvae: where the line reads the condition: camera-id or header:<name>"
    )
    condition_dropout: float = Field(
        default=0.2, ge=0, lt=1, description="cvae: share of training images trained as unknown (index 0)"
    )
    pretrain_fraction: float = Field(
        default=0.3,
        ge=0,
        lt=1,
        description="stacked-ae: share of the epochs and time budget for greedy layer-wise pretraining",
    )
    false_alarm_rate: float = Field(
        default=1e-3,
        gt=0,
        lt=0.5,
        description="the image threshold: the score normal frames exceed with this probability "
        "(training.evaluation.calibrate.budget_threshold)",
    )
    labelled_val_dir: Path | None = Field(
        default=None, description="labelled validation set (MVTec test/ layout) for an F1-optimal threshold"
    )
    encoder_out: Path | None = Field(
        default=None, description="also write the encoder alone here (training.export.encoder)"
    )
    device: Device = Field(default="auto", description="auto, cpu or cuda")
    model_name: str = Field(default="", description="model name; empty: the data folder's name")
    model_version: str = Field(default="", description="model version; empty: a UTC timestamp")
    show_progress: bool = Field(default=True, description="progress bars and the summary table")

    @field_validator("backbone", "corruption", "score")
    @classmethod
    def _one_of_the_known(cls, value: str, info: ValidationInfo) -> str:
        valid = KNOWN_CHOICES[info.field_name]()
        if value not in valid:
            raise ValueError(f"must be one of {', '.join(valid)}")
        return value

    @field_validator("condition_source")
    @classmethod
    def _condition_source(cls, value: str) -> str:
        if value != "camera-id" and not (value.startswith("header:") and len(value) > len("header:")):
            raise ValueError("must be 'camera-id' or 'header:<name>'")
        return value

    @model_validator(mode="after")
    def _model_defaults(self) -> TrainConfig:
        """The model's defaults where a field is None, then the checks that depend on the model."""
        if self.model is None:
            object.__setattr__(self, "model", DEFAULT_SCRATCH_MODEL if self.backbone == NO_BACKBONE else DEFAULT_MODEL)
        entry = self.entry
        if entry.uses_backbone and self.backbone == NO_BACKBONE:
            raise ConfigError("backbone", self.backbone, f"model {self.model!r} works on a pretrained backbone")
        for name in ("size", "batch_size", "learning_rate", "epochs"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(entry.defaults, name))
        if not (self.size >= 32 and self.size % self.size_multiple == 0):  # type: ignore[operator]
            raise ConfigError("size", self.size, f"must be >= 32 and divisible by {self.size_multiple}")
        return self

    @property
    def entry(self) -> ModelEntry[ImageFamily[Any]]:
        """The registry entry of the model (for `auto`, of the default: the candidates share its defaults)."""
        return model_entry(DEFAULT_MODEL if self.model == AUTO_MODEL else self.model)  # type: ignore[arg-type]

    @property
    def candidates(self) -> tuple[str, ...]:
        """The models this run chooses among on the validation defects."""
        return FEATURE_MODEL_NAMES if self.model == AUTO_MODEL else (self.model,)  # type: ignore[return-value]

    @property
    def uses_backbone(self) -> bool:
        return self.entry.uses_backbone

    @property
    def size_multiple(self) -> int:
        """Feature-space models downsample by 32 (backbone stride 16, then the bottleneck)."""
        return 32 if self.uses_backbone else 2 ** len(self.widths)

    @property
    def score_pool(self) -> int:
        """Odd window (about 1/12 of the image) over which the anomaly map is averaged for the image score."""
        return max(3, (self.size // 12) | 1)

    @property
    def checkpoint(self) -> Path:
        """Where the best weights are kept beside the model (training.export.encoder_checkpoint reads them)."""
        return self.out.with_suffix(".ckpt.pt")

    def create_model(self, name: str, channels: int, **extra: Any) -> nn.Module:
        """The registered model `name` with this run's config fields (`model_overrides`) and `extra` ones."""
        return create_model(name, channels, **self.model_overrides(), **extra)

    def model_overrides(self) -> dict[str, Any]:
        if self.uses_backbone:
            return {"backbone": self.backbone, "image_size": self.size}
        common = {
            "widths": self.widths,
            "latent_channels": self.latent_channels,
            "dropout": self.dropout,
            "head_width": self.head_width,
        }
        # Knobs only some models have go only to those, so the others do not warn about them on every run.
        own = {f.name for f in fields(self.entry.config_class)}
        extra = {
            "score": self.score,
            "kl_map_weight": self.kl_map_weight,
            "condition_dropout": self.condition_dropout,
        }
        return {**common, **{key: value for key, value in extra.items() if key in own}}

    def to_json_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


def config_error(exc: ValidationError, config_class: type) -> ConfigError:
    """The first of pydantic's errors in a pydantic config dataclass as ConfigError(field, bad value, reason), the
    reason in the config's words (bounds as `must be in (0, 0.5)`, choices as `must be 'a' or 'b'`)."""
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0]) if error["loc"] else "config"
    if error["type"] == "missing":
        return ConfigError(name, None, "missing")
    if error["type"] == "value_error":
        reason = str(error["ctx"]["error"])
    elif error["type"] == "literal_error":
        reason = f"must be {error['ctx']['expected']}"
    elif error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        reason = _bounds(_field(config_class, name))
    else:
        reason = f"{error['msg'][:1].lower()}{error['msg'][1:]}"
    return ConfigError(name, error.get("input"), reason)


def _field(config_class: type, name: str) -> FieldInfo:
    return config_class.__pydantic_fields__[name]  # type: ignore[attr-defined]


def _bounds(field: FieldInfo) -> str:
    """A field's bounds as the config states them: `must be >= 1`, `must be in (0, 0.5)`."""
    low = high = None
    for bound in field.metadata:
        if isinstance(bound, Ge | Gt):
            low = ("[" if isinstance(bound, Ge) else "(", bound.ge if isinstance(bound, Ge) else bound.gt)
        elif isinstance(bound, Le | Lt):
            high = ("]" if isinstance(bound, Le) else ")", bound.le if isinstance(bound, Le) else bound.lt)
    if low and high:
        return f"must be in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"must be {'>=' if low[0] == '[' else '>'} {low[1]:g}"
    assert high is not None
    return f"must be {'<=' if high[0] == ']' else '<'} {high[1]:g}"
