"""Load a LineGuard sensor model (kind "sensor": N x C x T raw windows in) and score batches of windows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.contract import OUTPUT_NAMES, SENSOR_INPUT_NAME, ModelMetadata, SensorSpec
from pipeline.errors import ModelLoadError
from pipeline.inference import apply_threshold_override, load_proto, thresholds_path
from pipeline.providers import open_session
from pipeline.sensors.timefeatures import with_calendar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowScores:
    """Outputs of one batch of windows: reconstruction in raw units, per-sample error, one score per window."""

    reconstruction: np.ndarray  # N x C x T
    anomaly_map: np.ndarray  # N x C x T
    score: np.ndarray  # N


class SensorModel:
    """One loaded sensor model: an inference session plus its validated metadata and sensor block."""

    def __init__(self, path: Path, prefer_gpu: bool = True) -> None:
        self.path = Path(path)
        proto = load_proto(self.path)
        metadata = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
        if metadata.kind != "sensor" or metadata.sensor is None:
            raise ModelLoadError(str(path), f"not a sensor model (kind {metadata.kind!r})")
        self.session = open_session(proto.SerializeToString(), self.path, prefer_gpu)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [SENSOR_INPUT_NAME]:
            raise ModelLoadError(str(path), f"expected one input {SENSOR_INPUT_NAME!r}, found {inputs}")
        if tuple(outputs) != OUTPUT_NAMES:
            raise ModelLoadError(str(path), f"expected outputs {list(OUTPUT_NAMES)}, found {outputs}")
        self.metadata = apply_threshold_override(metadata, thresholds_path(self.path))
        self.spec: SensorSpec = metadata.sensor
        self.provider = self.session.get_providers()[0]
        log.info("sensor model %s v%s runs on %s", metadata.model_name, metadata.model_version, self.provider)

    @property
    def layout(self) -> object:
        """What a replacement must keep to take over mid-stream: the stored window tails are cut for these."""
        return (self.spec.channels, self.spec.window_length, self.spec.window_stride)

    def warm_up(self, batch_size: int = 1) -> None:
        """One inference on windows at the channels' training means; a model that fails there or answers NaN/inf is
        refused before it scores a reading."""
        spec = self.spec
        level = np.broadcast_to(np.array(spec.channel_mean, dtype=np.float32), (spec.window_length, len(spec.channels)))
        window = self.inputs(level, np.arange(spec.window_length) * 1000.0).T
        windows = np.broadcast_to(window, (batch_size, *window.shape))
        try:
            scores = self.score(np.array(windows))
        except Exception as exc:  # onnxruntime raises its own types at run time
            raise ModelLoadError(str(self.path), f"warm-up inference failed: {type(exc).__name__}: {exc}") from exc
        if not (np.isfinite(scores.score).all() and np.isfinite(scores.anomaly_map).all()):
            raise ModelLoadError(str(self.path), "warm-up inference gave non-finite scores (NaN or inf)")

    def inputs(self, values: np.ndarray, timestamps_ms: np.ndarray | None) -> np.ndarray:
        """Raw readings T x C (the model's channel order) as the graph takes them: with the calendar channels the
        model was trained with appended (pipeline.sensors.timefeatures; ValueError without timestamps)."""
        return with_calendar(values, timestamps_ms, self.spec.calendar)

    def score(self, windows: np.ndarray) -> WindowScores:
        """Run one N x C' x T float32 batch of raw windows through the graph (C' = sensor then calendar channels,
        see `inputs`); reconstruction and anomaly map cover the sensor channels only."""
        expected = (self.spec.input_channels, self.spec.window_length)
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise ValueError(f"window batch shape {windows.shape} does not match model input N x {expected}")
        reconstruction, anomaly_map, score = self.session.run(
            list(OUTPUT_NAMES), {SENSOR_INPUT_NAME: np.ascontiguousarray(windows, dtype=np.float32)}
        )
        return WindowScores(reconstruction=reconstruction, anomaly_map=anomaly_map, score=score)
