"""The frozen configuration of one training run, checked field by field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from training.backbone import backbone_names
from training.data.corruptions import CORRUPTIONS
from training.errors import ConfigError
from training.models import (
    AUTO_MODEL,
    DEFAULT_MODEL,
    DEFAULT_SCRATCH_MODEL,
    FEATURE_MODEL_NAMES,
    ModelEntry,
    model_entry,
)
from training.models.blocks import SCORE_MODES

NO_BACKBONE = "none"


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train()` needs; defaults are sized for a 2-core CPU and a few minutes.

    Fields left None take the model's defaults (`TrainDefaults` in the registry); `model` None means
    the default model, or the default from-scratch model when `backbone` is "none".
    """

    data_dir: Path
    out: Path
    model: str | None = None
    backbone: str = "efficientnet-lite0"
    size: int | None = None
    resize_mode: str = "stretch"
    epochs: int | None = None
    max_minutes: float = 15.0  # a safety net: the epochs decide; a budget that cuts a phase short is a warning
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 1e-5
    patience: int = 15
    val_fraction: float = 0.1
    seed: int = 0
    defect_probability: float = 0.5  # share of training images corrupted, whatever the corruption
    corruption: str = "synthetic"  # what denoising models learn to undo: training.data.corruptions.CORRUPTIONS
    noise_level: float = 0.1  # gaussian sigma, salt-pepper pixel share, mask area share
    widths: tuple[int, ...] = (16, 32, 64, 128)
    latent_channels: int = 64
    dropout: float = 0.1
    head_width: int = 8
    # None: enough epochs for RESTORER_STEPS optimiser steps. The anomaly map does not depend on the restorer, and at
    # 224 px one of its epochs costs about four of the map's: a fixed 10 epochs were 45 % of a 14-minute run on
    # magnetic tile's 630 images, while 4 left bottle's 188 with a blurred restoration (training.feature_fit)
    restorer_epochs: int | None = None
    contrast: str = "auto"  # per-frame contrast normalisation of feature-space models: auto, on or off
    ssim_weight: float = 1.0
    segmentation_weight: float = 1.0
    kl_weight: float = 1e-3
    kl_warmup_epochs: int = 10  # KL weight rises from 0 to kl_weight over these epochs (vae, cvae)
    score: str = "reconstruction"  # vae, cvae: "reconstruction" or "elbo" (plus the per-location KL)
    kl_map_weight: float = 0.05  # weight of the KL in the "elbo" anomaly map
    condition_source: str = "camera-id"  # cvae: where the line reads the condition: camera-id or header:<name>
    condition_dropout: float = 0.2  # cvae: share of training images trained as "unknown" (index 0)
    pretrain_fraction: float = 0.3  # stacked-ae: share of the epochs and time budget for greedy layer-wise pretraining
    # image threshold: the score normal frames exceed with this probability
    # (training.evaluation.calibrate.budget_threshold)
    false_alarm_rate: float = 1e-3
    labelled_val_dir: Path | None = None
    encoder_out: Path | None = None  # also write the encoder alone here (training.export.encoder)
    device: str = "auto"
    model_name: str = ""
    model_version: str = ""
    show_progress: bool = True

    def __post_init__(self) -> None:
        self._resolve_model_defaults()
        checks: list[tuple[str, bool, str]] = [
            (
                "size",
                self.size >= 32 and self.size % self.size_multiple == 0,
                f"must be >= 32 and divisible by {self.size_multiple}",
            ),
            ("restorer_epochs", self.restorer_epochs is None or self.restorer_epochs >= 0, "must be >= 0"),
            ("contrast", self.contrast in ("auto", "on", "off"), "must be 'auto', 'on' or 'off'"),
            ("resize_mode", self.resize_mode in ("stretch", "letterbox"), "must be 'stretch' or 'letterbox'"),
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("max_minutes", self.max_minutes > 0, "must be > 0"),
            ("batch_size", self.batch_size >= 2, "must be >= 2 (batch norm needs two samples)"),
            ("learning_rate", 0 < self.learning_rate < 1, "must be in (0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("patience", self.patience >= 1, "must be >= 1"),
            ("val_fraction", 0 < self.val_fraction < 0.5, "must be in (0, 0.5)"),
            ("defect_probability", 0 <= self.defect_probability <= 1, "must be in [0, 1]"),
            ("corruption", self.corruption in CORRUPTIONS, f"must be one of {', '.join(CORRUPTIONS)}"),
            ("noise_level", 0 < self.noise_level < 1, "must be in (0, 1)"),
            ("kl_weight", self.kl_weight >= 0, "must be >= 0"),
            ("kl_warmup_epochs", self.kl_warmup_epochs >= 0, "must be >= 0"),
            ("score", self.score in SCORE_MODES, f"must be one of {', '.join(SCORE_MODES)}"),
            ("kl_map_weight", self.kl_map_weight >= 0, "must be >= 0"),
            (
                "condition_source",
                self.condition_source == "camera-id" or self.condition_source.startswith("header:"),
                "must be 'camera-id' or 'header:<name>'",
            ),
            ("condition_dropout", 0 <= self.condition_dropout < 1, "must be in [0, 1)"),
            ("pretrain_fraction", 0 <= self.pretrain_fraction < 1, "must be in [0, 1)"),
            ("latent_channels", self.latent_channels >= 1, "must be >= 1"),
            ("dropout", 0 <= self.dropout < 1, "must be in [0, 1)"),
            ("false_alarm_rate", 0 < self.false_alarm_rate < 0.5, "must be in (0, 0.5)"),
            ("device", self.device in ("auto", "cpu", "cuda"), "must be 'auto', 'cpu' or 'cuda'"),
        ]
        for name, ok, reason in checks:
            if not ok:
                raise ConfigError(name, getattr(self, name), reason)

    def _resolve_model_defaults(self) -> None:
        valid_backbones = [*backbone_names(), NO_BACKBONE]
        if self.backbone not in valid_backbones:
            raise ConfigError("backbone", self.backbone, f"must be one of {', '.join(valid_backbones)}")
        if self.model is None:
            object.__setattr__(self, "model", DEFAULT_SCRATCH_MODEL if self.backbone == NO_BACKBONE else DEFAULT_MODEL)
        entry = self.entry
        if entry.uses_backbone and self.backbone == NO_BACKBONE:
            raise ConfigError("backbone", self.backbone, f"model {self.model!r} works on a pretrained backbone")
        for name in ("size", "batch_size", "learning_rate", "epochs"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(entry.defaults, name))

    @property
    def entry(self) -> ModelEntry:
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
