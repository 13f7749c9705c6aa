"""The sensor side of the ONNX contract: raw windows in, per-channel z-score in the graph, three outputs out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from pipeline.contract import OUTPUT_NAMES, SENSOR_INPUT_NAME, ModelMetadata
from training.errors import ExportParityError
from training.export.contract import PARITY_TOLERANCE, save_onnx


class SensorScoringGraph(nn.Module):
    """What the line runs on a batch of raw windows N x C x T.

    Outputs: the reconstruction in raw units (the denoised window), the absolute error per channel and
    sample in normalised units (so channels with large raw ranges do not drown the others), and the
    window score: the largest per-channel mean error. A fault usually shows in one or two sensors (the
    flow rate when a valve closes); a mean over all channels would dilute it with the quiet ones.

    `level_free` (one flag per channel): channels whose window level (`level_statistic`: the mean, or the median,
    which a spike does not move) is removed after the z-score, so the model sees and scores their shape only. A
    motor or fluid temperature drifts with warm-up and the weather; a model of one short normal run reads the next
    hour's temperature as an anomaly however it is scaled.

    `calendar_channels`: inputs after the sensor channels (the phase of the day and week, pipeline.sensors.timefeatures)
    that the model reads and reconstructs but that are neither normalised nor scored, nor in the outputs.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: np.ndarray,
        std: np.ndarray,
        level_free: np.ndarray | None = None,
        level_statistic: str = "mean",
        calendar_channels: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        channels = np.asarray(mean).size
        flags = np.zeros(channels, dtype=bool) if level_free is None else np.asarray(level_free, dtype=bool)
        self.channels = channels
        self.calendar_channels = calendar_channels
        self.median = level_statistic == "median"
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32).reshape(1, -1, 1))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32).reshape(1, -1, 1))
        self.register_buffer("level_free", torch.as_tensor(flags, dtype=torch.float32).reshape(1, -1, 1))

    def normalise(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's input and the level taken out of it (zero for channels that keep their level)."""
        z = (window[:, : self.channels] - self.mean) / self.std
        if self.median:
            # lower median by sorting (exports as TopK): the middle sample, not an average a spike can move
            centre = z.sort(dim=2).values[:, :, (z.shape[2] - 1) // 2 : (z.shape[2] - 1) // 2 + 1]
        else:
            centre = z.mean(dim=2, keepdim=True)
        level = centre * self.level_free
        if not self.calendar_channels:
            return z - level, level
        return torch.cat([z - level, window[:, self.channels :]], dim=1), level

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, level = self.normalise(window)
        output = self.model(z)
        restored, anomaly_map = output.reconstruction[:, : self.channels], output.anomaly_map[:, : self.channels]
        reconstruction = (restored + level) * self.std + self.mean
        return reconstruction, anomaly_map, anomaly_map.mean(dim=2).amax(dim=1)


def export_sensor_onnx(graph: SensorScoringGraph, metadata: ModelMetadata, out: Path) -> float:
    """Write the sensor model with metadata embedded; returns the parity check's max abs difference."""
    if metadata.sensor is None:
        raise ValueError("a sensor model's metadata needs its sensor block")
    graph = graph.eval().cpu()
    example = _example_windows(graph, 2, metadata.input_channels, metadata.input_size, seed=1)
    save_onnx(graph, example, SENSOR_INPUT_NAME, metadata, out)
    return sensor_parity_check(graph, out)


def _example_windows(graph: SensorScoringGraph, batch: int, channels: int, length: int, seed: int) -> torch.Tensor:
    """Raw-unit windows around the training statistics (mean +- 2 std), where the line's readings lie; calendar
    channels (after the sensors) in [-1, 1]."""
    noise = torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(seed))
    sensors = noise[:, : graph.channels] * 2 * graph.std + graph.mean
    return torch.cat([sensors, noise[:, graph.channels :].tanh()], dim=1).float()


def sensor_parity_check(graph: SensorScoringGraph, path: Path, batch: int = 3, seed: int = 0) -> float:
    """Run torch and onnxruntime on the same raw windows; raise if an output differs beyond tolerance.

    The reconstruction is in raw units (a voltage of 230 V has float32 steps of about 1e-5 V), so it is
    compared relative to each channel's std; the error map and score are already normalised.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    channels, length = (int(d) for d in session.get_inputs()[0].shape[1:])
    x = _example_windows(graph, batch, channels, length, seed)
    with torch.no_grad():
        expected = [t.numpy() for t in graph.eval()(x)]
    actual = session.run(list(OUTPUT_NAMES), {SENSOR_INPUT_NAME: x.numpy()})
    scale = graph.std.numpy()
    worst = 0.0
    for name, want, got in zip(OUTPUT_NAMES, expected, actual, strict=True):
        diff = np.abs(want - got) / (scale if name == "reconstruction" else 1.0)
        if float(diff.max()) > PARITY_TOLERANCE:
            raise ExportParityError(name, float(diff.max()), PARITY_TOLERANCE)
        worst = max(worst, float(diff.max()))
    return worst
