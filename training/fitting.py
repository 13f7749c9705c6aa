"""What both training loops share: the learning-rate schedule, best-state copies, progress and summary."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from training.export.contract import ScoringGraph

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSummary:
    """How the fit went, stored in the model's metadata and printed at the end."""

    epochs: int
    minutes: float
    best_epoch: int
    best_val_loss: float
    stopped_by: str
    val_losses: tuple[float, ...] = ()  # per epoch, for convergence curves
    # where the time went (feature-space models: backbone features, each candidate's fit, the validation defects,
    # the restorer), so a run that is slower than expected says why
    phase_seconds: dict[str, float] = field(default_factory=dict)


class BestEpoch:
    """Keeps the weights of the epoch with the lowest validation loss and says when to stop."""

    def __init__(self, model: nn.Module, patience: int, deadline: float, planned_epochs: int) -> None:
        self.model, self.patience, self.deadline, self.planned_epochs = model, patience, deadline, planned_epochs
        self.loss, self.epoch, self.state = math.inf, 0, copy_state(model)
        self.stopped_by = "epochs"
        self.history: list[float] = []

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record one epoch's validation loss; True when these weights are the best so far."""
        improved = val_loss < self.loss
        self.history.append(round(val_loss, 6))
        if improved:
            self.loss, self.epoch, self.state = val_loss, epoch, copy_state(self.model)
        return improved

    def should_stop(self, epoch: int) -> bool:
        if epoch - self.epoch >= self.patience:
            self.stopped_by = "early stopping"
        elif time.monotonic() > self.deadline and epoch < self.planned_epochs:  # after the last epoch nothing is cut
            self.stopped_by = "time budget"
        else:
            return False
        return True

    def restore(self, last_epoch: int, started: float) -> FitSummary:
        """Load the best weights back into the model and summarise the fit.

        A fit the time budget cut short is said plainly: a busy machine must not silently trade epochs for a
        worse model.
        """
        self.model.load_state_dict(self.state)
        minutes = (time.monotonic() - started) / 60
        if self.stopped_by == "time budget":
            log.warning(
                "the time budget stopped training after %d of %d epochs (%.1f min, best epoch %d): the model may be "
                "undertrained; give more --max-minutes or run on a quieter machine",
                last_epoch,
                self.planned_epochs,
                minutes,
                self.epoch,
            )
        return FitSummary(last_epoch, minutes, self.epoch, self.loss, self.stopped_by, tuple(self.history))


def cosine_learning_rate(base: float, progress: float, floor: float = 0.05) -> float:
    """Cosine decay over the run, measured by whichever of time budget or epoch cap is nearer."""
    progress = min(1.0, max(0.0, progress))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


def progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), disable=not enabled)


def copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


@torch.no_grad()
def predict(
    graph: ScoringGraph, images: np.ndarray, batch: int = 32, map_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps (N x 1 x H x W) and image scores (N) from the torch scoring graph; `map_only` skips what the map
    and score do not need (a feature-space model's image restorer)."""
    graph.eval()
    maps, scores = [], []
    for start in range(0, len(images), batch):
        chunk = torch.from_numpy(images[start : start + batch])
        if map_only:
            anomaly_map = graph.model.anomaly_map(chunk)
            score = graph.image_score(anomaly_map)
        else:
            _, anomaly_map, score = graph(chunk)
        maps.append(anomaly_map.numpy())
        scores.append(score.numpy())
    return np.concatenate(maps), np.concatenate(scores)
