"""The sensor autoencoders' family (sensor-cae, sensor-dae, sensor-vae): windows of normalised readings N x C x T
reconstructed under the squared error (plus the KL term of the variational model), through the one loop
(training.fitting.fit_loop) with early stopping on held-out windows; Adam at a constant rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from training.fitting import FitPlan, FitStep, FitSummary, fit_loop
from training.models.family import SensorFamily, SensorRun


class WindowStep(FitStep):
    """Batches of training windows in a fresh order each epoch (the last one may be smaller); validation on every
    held-out window at once."""

    def __init__(self, model: nn.Module, train_windows: np.ndarray, val_windows: np.ndarray, run: SensorRun) -> None:
        self.model, self.run = model, run
        self.train_x, self.val_x = torch.from_numpy(train_windows), torch.from_numpy(val_windows)

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self.train_x))
        for start in range(0, len(order), self.run.batch_size):
            yield self.train_x[order[start : start + self.run.batch_size]]

    def loss(self, batch: Any, epoch: int) -> torch.Tensor:
        return sensor_loss(self.model, batch, self.run.kl_weight)

    def validation_loss(self) -> float:
        return validation_loss(self.model, self.val_x)


def sensor_loss(model: nn.Module, batch: torch.Tensor, kl_weight: float) -> torch.Tensor:
    output = model(batch)
    loss = torch.nn.functional.mse_loss(output.reconstruction, batch)
    return loss if output.kl_divergence is None else loss + kl_weight * output.kl_divergence


@torch.no_grad()
def validation_loss(model: nn.Module, val_x: torch.Tensor) -> float:
    model.eval()
    return float(torch.nn.functional.mse_loss(model(val_x).reconstruction, val_x))


class SensorWindowFamily(SensorFamily):
    """Every registered sensor model: they differ in their network only."""

    def fit(self, model: nn.Module, train_windows: np.ndarray, val_windows: np.ndarray, run: SensorRun) -> FitSummary:
        optimizer = torch.optim.Adam(model.parameters(), lr=run.learning_rate, weight_decay=run.weight_decay)
        plan = FitPlan(
            label="fitting",
            epochs=run.epochs,
            deadline=time.monotonic() + run.max_minutes * 60,
            learning_rate=run.learning_rate,
            patience=run.patience,
            schedule="constant",
            show_progress=run.show_progress,
        )
        return fit_loop(WindowStep(model, train_windows, val_windows, run), optimizer, plan)


SENSOR = SensorWindowFamily()
