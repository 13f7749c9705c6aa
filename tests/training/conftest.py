"""Fixtures for training tests: tiny synthetic data sets written to temporary folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.synthetic_set import write_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "parts"
    return write_synthetic_dataset(root, n_train=12, n_test_good=4, n_test_defect=4, size=64, seed=1)
