"""The one optimisation loop every model trains through, image or sensor, and what it keeps.

`fit_loop(step, optimizer, plan)` runs epochs of a model's `FitStep` (its batches, its loss on one, its validation
loss) until the plan's epoch cap, its time budget or early stopping, with the cosine learning-rate schedule, the
best-epoch copy of the weights (and its checkpoint), the progress bar and the time-budget warning. Each model family
(training/models/<family>/) writes its step; the loop is the same for all of them.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

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


class FitStep(ABC):
    """One model's part of the loop: which batches an epoch visits, the loss of one, and the validation loss.

    A step whose `validates` is False has no validation loss: the loop keeps its last weights (no best epoch, no
    early stopping) and says `FitPlan.cut_warning` when the time budget cuts it short.
    """

    model: nn.Module  # whose weights the loop keeps at their best epoch
    validates: bool = True

    def begin_epoch(self, epoch: int) -> None:
        """Before the epoch's batches (1-based `epoch`): training mode by default."""
        self.model.train()

    @abstractmethod
    def batches(self, epoch: int) -> Iterable[Any]:
        """The epoch's batches, in order; drawn lazily, so the step's random numbers come in the same order as ever."""

    @abstractmethod
    def loss(self, batch: Any, epoch: int) -> torch.Tensor:
        """The scalar loss of one batch (before `backward`)."""

    def validation_loss(self) -> float:
        """The loss on held-out data after an epoch (steps with `validates`); lower is better."""
        raise NotImplementedError(f"{type(self).__name__} does not validate")


# when the cosine schedule moves: before every optimiser step, once per epoch, or never (the optimiser's rate)
Schedule = Literal["step", "epoch", "constant"]


@dataclass(frozen=True)
class FitPlan:
    """How long and how one `fit_loop` runs.

    `deadline` is a time.monotonic() value; the learning rate decays (cosine, `schedule`) over whichever of the
    deadline or the epoch cap is nearer. `patience` epochs without a better validation loss stop the fit;
    `checkpoint`, if given, receives the best weights whenever they improve.
    """

    label: str
    epochs: int
    deadline: float
    learning_rate: float
    patience: float = math.inf  # epochs without improvement before stopping
    schedule: Schedule = "step"
    checkpoint: Path | None = None
    show_progress: bool = True
    # said (a warning) when the time budget cuts a fit without validation short; "%d of %d" are the epochs
    cut_warning: str = "the time budget stopped %s after %d of %d epochs"


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


def fit_loop(step: FitStep, optimizer: torch.optim.Optimizer, plan: FitPlan) -> FitSummary:
    """Train `step.model` for `plan.epochs` epochs or until the deadline or early stopping; returns how it went.

    With validation, the best epoch's weights are restored at the end; without, the last epoch's stay (the summary's
    best epoch is the last one, its loss NaN).
    """
    started = time.monotonic()
    best = BestEpoch(step.model, plan.patience, plan.deadline, plan.epochs) if step.validates else None
    stopped_by, epoch = "epochs", 0
    with progress_bar(plan.show_progress) as progress:
        task = progress.add_task(plan.label, total=plan.epochs)
        for epoch in range(1, plan.epochs + 1):
            step.begin_epoch(epoch)
            if plan.schedule == "epoch":
                schedule_learning_rate(optimizer, plan, started, epoch)
            for batch in step.batches(epoch):
                if plan.schedule == "step":
                    schedule_learning_rate(optimizer, plan, started, epoch)
                loss = step.loss(batch, epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if best is None:
                progress.update(task, advance=1, description=f"{plan.label} epoch {epoch}")
                if time.monotonic() > plan.deadline and epoch < plan.epochs:
                    log.warning(plan.cut_warning, plan.label, epoch, plan.epochs)
                    stopped_by = "time budget"
                    break
                continue
            val_loss = step.validation_loss()
            if best.update(epoch, val_loss) and plan.checkpoint is not None:
                torch.save(best.state, plan.checkpoint)
            progress.update(
                task, advance=1, description=f"{plan.label} epoch {epoch} val {val_loss:.4f} best {best.loss:.4f}"
            )
            if best.should_stop(epoch):
                break
    if best is not None:
        return best.restore(epoch, started)
    return FitSummary(epoch, (time.monotonic() - started) / 60, epoch, math.nan, stopped_by)


def schedule_learning_rate(optimizer: torch.optim.Optimizer, plan: FitPlan, started: float, epoch: int) -> None:
    """The cosine schedule's rate now: progress is the larger of the time spent and the epochs done."""
    spent = (time.monotonic() - started) / max(plan.deadline - started, 1e-6)
    set_learning_rate(optimizer, cosine_learning_rate(plan.learning_rate, max(spent, (epoch - 1) / plan.epochs)))


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


class PhaseClock:
    """Seconds spent in each named phase, in order (FitSummary.phase_seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self.last, 1)
        self.last = now
