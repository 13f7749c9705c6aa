"""The training extra (torch, scikit-learn, matplotlib): commands check it before importing what needs it."""

from __future__ import annotations

import importlib.util

from training.errors import TrainingError

TRAINING_EXTRA_HINT = "pip install torch==2.13.0 'lineguard[train]'"


def require_training_stack() -> None:
    """Fail with the install command when the training extra is missing (e.g. on a line image)."""
    for module in ("torch", "sklearn", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            raise TrainingError(f"this command needs the training extra ({module} is missing): {TRAINING_EXTRA_HINT}")
