"""The frozen configuration of one sensor-model training run, checked field by field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.errors import ConfigError
from training.models import DEFAULT_SENSOR_MODEL, sensor_model_entry
from training.sensors.data import CsvColumns


@dataclass(frozen=True)
class SensorTrainConfig:
    """Everything `train_sensors()` needs; fields left None take the model's registry defaults.

    Each recording is split in time: its first `1 - val_fraction` trains the model, its last
    `val_fraction` (never seen in training) picks the best epoch and calibrates the window threshold.
    `scale_data`: other normal recordings (a long anomaly-free run) whose per-channel std is a floor for the
    normalisation's std; they are not trained on.
    `columns`: which CSV columns are time, labels and readings, and the time-gap rule (training.sensors.data).
    `level_free`: channels scored on their shape within a window, not their level (sensors that drift with
    warm-up or ambient: motor and fluid temperatures); the graph removes each window's mean from them.
    """

    data: Path
    out: Path
    model: str = DEFAULT_SENSOR_MODEL
    scale_data: Path | None = None
    columns: CsvColumns = field(default_factory=CsvColumns)
    level_free: tuple[str, ...] = ()
    window: int | None = None
    stride: int = 1
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
        object.__setattr__(self, "level_free", tuple(self.level_free))
        if self.window is None:
            object.__setattr__(self, "window", defaults.size)
        multiple = 2 ** len(self.widths)
        checks: list[tuple[str, bool, str]] = [
            ("window", self.window >= multiple and self.window % multiple == 0, f"must be a multiple of {multiple}"),
            ("stride", self.stride >= 1, "must be >= 1"),
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
