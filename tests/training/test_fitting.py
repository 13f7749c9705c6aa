"""The one training loop (training.fitting.fit_loop): the best epoch kept and checkpointed, early stopping, the
time budget said plainly, the cosine schedule per step or per epoch, a fit without validation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from training.fitting import BestEpoch, FitPlan, FitStep, cosine_learning_rate, fit_loop


def run(epochs: int, deadline_passes_in: int, caplog: pytest.LogCaptureFixture) -> str:
    """A fit of `epochs` whose deadline passes during epoch `deadline_passes_in`; how it says it stopped."""
    best = BestEpoch(torch.nn.Linear(2, 1), patience=10, deadline=time.monotonic() + 3600, planned_epochs=epochs)
    epoch = 0
    with caplog.at_level(logging.WARNING, logger="training.fitting"):
        for epoch in range(1, epochs + 1):
            best.update(epoch, 1.0 / epoch)
            if epoch == deadline_passes_in:
                best.deadline = time.monotonic() - 1
            if best.should_stop(epoch):
                break
        return best.restore(epoch, time.monotonic()).stopped_by


def test_a_deadline_passed_in_the_last_epoch_cut_nothing(caplog: pytest.LogCaptureFixture) -> None:
    assert run(3, deadline_passes_in=3, caplog=caplog) == "epochs"
    assert not caplog.records


def test_a_deadline_that_stops_epochs_early_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert run(5, deadline_passes_in=2, caplog=caplog) == "time budget"
    assert "after 2 of 5 epochs" in caplog.text


class ScriptedStep(FitStep):
    """Two batches per epoch on a one-weight model; validation losses as scripted; records each batch's rate."""

    def __init__(self, val_losses: list[float], validates: bool = True) -> None:
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.val_losses, self.validates = val_losses, validates
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.rates: list[tuple[int, float]] = []
        self.epochs_seen = 0

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        self.epochs_seen = epoch
        for _ in range(2):
            yield torch.ones(4, 1)

    def loss(self, batch: Any, epoch: int) -> torch.Tensor:
        self.rates.append((epoch, self.optimizer.param_groups[0]["lr"]))  # the rate this batch's update uses
        return ((self.model(batch) - 1) ** 2).mean()

    def validation_loss(self) -> float:
        return self.val_losses[self.epochs_seen - 1]


def plan(epochs: int, **overrides: Any) -> FitPlan:
    settings: dict[str, Any] = {"label": "test", "epochs": epochs, "deadline": time.monotonic() + 3600}
    return FitPlan(**{**settings, "learning_rate": 0.1, "show_progress": False, **overrides})


def test_the_best_epoch_is_restored_checkpointed_and_patience_stops(tmp_path: Path) -> None:
    step = ScriptedStep([0.5, 0.3, 0.4, 0.35, 0.36, 0.9])
    weights: list[float] = []
    original = step.validation_loss

    def remember() -> float:
        weights.append(float(step.model.weight.detach()))
        return original()

    step.validation_loss = remember  # type: ignore[method-assign]
    checkpoint = tmp_path / "best.ckpt.pt"
    summary = fit_loop(step, step.optimizer, plan(6, patience=3, checkpoint=checkpoint))
    assert (summary.epochs, summary.best_epoch, summary.stopped_by) == (5, 2, "early stopping")
    assert summary.val_losses == (0.5, 0.3, 0.4, 0.35, 0.36)
    assert float(step.model.weight.detach()) == pytest.approx(weights[1])  # the second epoch's weights are back
    assert float(torch.load(checkpoint)["weight"]) == pytest.approx(weights[1])


def test_the_cosine_schedule_moves_per_step_or_per_epoch_by_epochs_done() -> None:
    for schedule in ("step", "epoch"):
        step = ScriptedStep([1.0, 0.9, 0.8, 0.7])
        fit_loop(step, step.optimizer, plan(4, schedule=schedule))
        expected = [cosine_learning_rate(0.1, (epoch - 1) / 4) for epoch in (1, 1, 2, 2, 3, 3, 4, 4)]
        assert [rate for _, rate in step.rates] == pytest.approx(expected, rel=1e-4)
    constant = ScriptedStep([1.0, 0.9])
    fit_loop(constant, constant.optimizer, plan(2, schedule="constant"))
    assert [rate for _, rate in constant.rates] == [0.1] * 4


def test_a_fit_without_validation_keeps_its_last_weights_and_says_a_time_cut(caplog: pytest.LogCaptureFixture) -> None:
    step = ScriptedStep([], validates=False)
    with caplog.at_level(logging.WARNING, logger="training.fitting"):
        summary = fit_loop(step, step.optimizer, plan(3, deadline=time.monotonic() - 1, cut_warning="cut %s %d/%d"))
    assert (summary.epochs, summary.stopped_by, summary.val_losses) == (1, "time budget", ())
    assert math.isnan(summary.best_val_loss)
    assert caplog.messages == ["cut test 1/3"]
