"""The frozen configuration of one sensor-model training run, checked field by field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.contract import SENSOR_CALENDAR_KINDS, SENSOR_LEVEL_STATISTICS, SENSOR_POINT_RULES
from pipeline.errors import ConfigError
from training.models import DEFAULT_SENSOR_MODEL, sensor_model_entry
from training.sensors.data import CsvColumns


@dataclass(frozen=True)
class SensorTrainConfig:
    """Everything `train_sensors()` needs; fields left None take the model's registry defaults.

    Each recording is split in time: `val_fraction` of its rows, in blocks spread across it (one block, its tail,
    when it is short: training.sensors.choose.held_out_blocks), is never trained on; it picks the best epoch and
    calibrates the window threshold. The rest trains the model.
    `scale_data`: other normal recordings (a long anomaly-free run) whose per-channel std is a floor for the
    normalisation's std; they are not trained on.
    `columns`: which CSV columns are time, labels and readings, and the time-gap rule (training.sensors.data).
    `level_free`: channels scored on their shape within a window, not their level (sensors that drift with
    warm-up, ambient or load); the graph removes each window's `level_statistic` from them. None: the channels
    whose level drifts across the training data (training.sensors.choose.drifting_channels); () none.
    `window`, `stride`: None takes them from the data's dominant period (else the model's default window).
    `calendar`: periods ("day", "week") whose phase is an extra input (the readings need timestamps).
    `point_rule`: how `evaluate` judges a row from the windows covering it (pipeline.contract.SensorSpec): "row-mean"
    (their mean above the window threshold) or "all-windows" (SKAB's notebook rule).
    `adapt_rows`: 0, or the first rows of each run (recording, or stretch after a gap) whose level and scale its
    readings are re-expressed against, in training and evaluation alike (pipeline.sensors.adapt; the line refuses it).
    `false_alarm_rate`: the window threshold's budget on held-out normal windows (training.evaluation.calibrate); None
    uses `calibration_quantile` plus `sensitivity` std instead (the SKAB notebook protocol).
    """

    data: Path
    out: Path
    model: str = DEFAULT_SENSOR_MODEL
    scale_data: Path | None = None
    columns: CsvColumns = field(default_factory=CsvColumns)
    level_free: tuple[str, ...] | None = None
    level_statistic: str = "median"
    calendar: tuple[str, ...] = ()
    window: int | None = None
    stride: int | None = None
    epochs: int | None = None
    max_minutes: float = 5.0
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.0
    patience: int = 5
    val_fraction: float = 0.2
    widths: tuple[int, ...] = (32, 16)
    kernel_size: int = 7
    dropout: float = 0.2
    noise_std: float | None = None
    kl_weight: float = 1e-3
    point_rule: str = "row-mean"
    adapt_rows: int = 0
    false_alarm_rate: float | None = 0.01
    calibration_quantile: float = 0.99
    sensitivity: float = 0.0
    seed: int = 0
    model_name: str = ""
    model_version: str = ""
    show_progress: bool = True

    def __post_init__(self) -> None:
        defaults = sensor_model_entry(self.model).defaults
        for name in ("batch_size", "learning_rate", "epochs"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(defaults, name))
        if self.level_free is not None:
            object.__setattr__(self, "level_free", tuple(self.level_free))
        object.__setattr__(self, "calendar", tuple(self.calendar))
        multiple = self.time_multiple
        window_ok = self.window is None or (self.window >= multiple and self.window % multiple == 0)
        rate = self.false_alarm_rate
        checks: list[tuple[str, bool, str]] = [
            ("window", window_ok, f"must be a multiple of {multiple}"),
            ("stride", self.stride is None or self.stride >= 1, "must be >= 1"),
            ("level_statistic", self.level_statistic in SENSOR_LEVEL_STATISTICS, f"one of {SENSOR_LEVEL_STATISTICS}"),
            (
                "calendar",
                set(self.calendar) <= set(SENSOR_CALENDAR_KINDS) and len(set(self.calendar)) == len(self.calendar),
                f"distinct names from {SENSOR_CALENDAR_KINDS}",
            ),
            ("point_rule", self.point_rule in SENSOR_POINT_RULES, f"one of {SENSOR_POINT_RULES}"),
            ("adapt_rows", self.adapt_rows == 0 or self.adapt_rows >= 2, "must be 0 (off) or >= 2"),
            ("adapt_rows", not (self.adapt_rows and self.scale_data), "scale_data is in raw units: use one of them"),
            ("false_alarm_rate", rate is None or 0 < rate < 1, "must be in (0, 1)"),
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("max_minutes", self.max_minutes > 0, "must be > 0"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("learning_rate", 0 < self.learning_rate < 1, "must be in (0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("patience", self.patience >= 1, "must be >= 1"),
            ("val_fraction", 0 < self.val_fraction < 0.5, "must be in (0, 0.5)"),
            ("kl_weight", self.kl_weight >= 0, "must be >= 0"),
            ("calibration_quantile", 0.5 <= self.calibration_quantile <= 1, "must be in [0.5, 1]"),
            ("sensitivity", self.sensitivity >= 0, "must be >= 0"),
            ("columns.gap_periods", (self.columns.gap_periods or 2) > 1, "must be None or above 1"),
        ]
        for name, ok, reason in checks:
            if not ok:
                raise ConfigError(name, _value(self, name), reason)

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


def _value(cfg: SensorTrainConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
