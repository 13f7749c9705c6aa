"""What the training loops share: when a fit says the time budget cut it short."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from training.fitting import BestEpoch


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
