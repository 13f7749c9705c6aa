"""The frozen configuration of one sensor-model training run: each field's type, bounds and meaning declared once."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from pipeline.contract import AdaptRows, CalendarPeriods, LevelStatistic, PointRule
from pipeline.errors import ConfigError
from training.config import ConfigErrors
from training.models import DEFAULT_SENSOR_MODEL, sensor_model_entry
from training.sensors.data import CsvColumns


@dataclass(frozen=True, config=ConfigDict(extra="forbid", arbitrary_types_allowed=True))
class SensorTrainConfig(ConfigErrors):
    """Everything `train_sensors()` needs; fields left None take the model's registry defaults.

    Each recording is split in time: `val_fraction` of its rows, in blocks spread across it (one block, its tail,
    when it is short: training.sensors.choose.held_out_blocks), is never trained on; it picks the best epoch and
    calibrates the window threshold. The rest trains the model.
    """

    data: Path = Field(description="a sensor CSV, or a folder of them (training.sensors.data)")
    out: Path = Field(description="where the .onnx model is written")
    model: str = Field(default=DEFAULT_SENSOR_MODEL, description="registered sensor model (training.models)")
    scale_data: Path | None = Field(
        default=None,
        description="other normal recordings (a long anomaly-free run) whose per-channel std is a floor for the "
        "normalisation's std; they are not trained on",
    )
    columns: CsvColumns = Field(
        default_factory=CsvColumns,
        description="which CSV columns are time, labels and readings, and the time-gap rule (training.sensors.data)",
    )
    level_free: tuple[str, ...] | None = Field(
        default=None,
        description="channels scored on their shape within a window, not their level (sensors that drift with "
        "warm-up, ambient or load); the graph removes each window's level_statistic from them. None: the channels "
        "whose level drifts across the training data (training.sensors.choose.drifting_channels); () none",
    )
    level_statistic: LevelStatistic = Field(default="median", description="what a level-free window is centred on")
    calendar: CalendarPeriods = Field(
        default=(), description="periods whose phase is an extra input (the readings need timestamps)"
    )
    window: int | None = Field(
        default=None,
        description="samples per window, a multiple of 2 ** len(widths); None: from the data's dominant period "
        "(else the model's default window)",
    )
    stride: int | None = Field(default=None, ge=1, description="samples between windows; None: from the data")
    epochs: int | None = Field(default=None, ge=1, description="the epoch cap; None: the model's")
    max_minutes: float = Field(default=5.0, gt=0, description="the time budget of the fit")
    batch_size: int | None = Field(default=None, ge=1, description="windows per step; None: the model's")
    learning_rate: float | None = Field(default=None, gt=0, lt=1, description="Adam's rate; None: the model's")
    weight_decay: float = Field(default=0.0, ge=0, description="Adam weight decay")
    patience: int = Field(default=5, ge=1, description="epochs without a better validation loss before stopping")
    val_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="share of each recording held out, in blocks across it"
    )
    widths: tuple[int, ...] = Field(default=(32, 16), description="encoder widths, each halving the time axis")
    kernel_size: int = Field(default=7, description="the 1-D convolutions' kernel")
    dropout: float = Field(default=0.2, description="dropout between the convolutions")
    noise_std: float | None = Field(default=None, description="sensor-dae: input noise; None: the model's")
    kl_weight: float = Field(default=1e-3, ge=0, description="sensor-vae: KL weight against reconstruction")
    point_rule: PointRule = Field(
        default="row-mean",
        description="how evaluate judges a row from the windows covering it (pipeline.contract.SensorSpec): row-mean "
        "(their mean above the window threshold) or all-windows (SKAB's notebook rule)",
    )
    adapt_rows: AdaptRows = Field(
        default=0,
        description="0, or the first rows of each run (recording, or stretch after a gap) whose level and scale its "
        "readings are re-expressed against, in training and evaluation alike (pipeline.sensors.adapt)",
    )
    false_alarm_rate: float | None = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="the window threshold's budget on held-out normal windows (training.evaluation.calibrate); None "
        "uses calibration_quantile plus sensitivity std instead (the SKAB notebook protocol)",
    )
    calibration_quantile: float = Field(
        default=0.99, ge=0.5, le=1, description="without a budget: this quantile of held-out normal window scores"
    )
    sensitivity: float = Field(default=0.0, ge=0, description="without a budget: a margin in std of held-out scores")
    seed: int = Field(default=0, description="seeds the initial weights and the batch order")
    model_name: str = Field(default="", description="model name; empty: the data file or folder name")
    model_version: str = Field(default="", description="model version; empty: a UTC timestamp")
    show_progress: bool = Field(default=True, description="progress bars and the summary")

    @model_validator(mode="after")
    def _model_defaults(self) -> SensorTrainConfig:
        """The model's defaults where a field is None, then the checks across fields."""
        defaults = sensor_model_entry(self.model).defaults
        for name in ("batch_size", "learning_rate", "epochs"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(defaults, name))
        multiple = self.time_multiple
        if self.window is not None and not (self.window >= multiple and self.window % multiple == 0):
            raise ConfigError("window", self.window, f"must be a multiple of {multiple}")
        if self.adapt_rows and self.scale_data:
            raise ConfigError("adapt_rows", self.adapt_rows, "scale_data is in raw units: use one of them")
        if not (self.columns.gap_periods or 2) > 1:
            raise ConfigError("columns.gap_periods", self.columns.gap_periods, "must be None or above 1")
        return self

    @property
    def time_multiple(self) -> int:
        """Window lengths must be divisible by this (each strided layer halves the time axis)."""
        return 2 ** len(self.widths)

    @property
    def default_window(self) -> int:
        return sensor_model_entry(self.model).defaults.size

    def model_overrides(self) -> dict[str, Any]:
        overrides = {"widths": self.widths, "kernel_size": self.kernel_size, "dropout": self.dropout}
        return overrides | ({} if self.noise_std is None else {"noise_std": self.noise_std})

    def to_json_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}
