"""The feature-space families' shared part: they train by choosing among candidate settings on validation defects
(selection.py), each candidate on cached backbone features, then the image restorer (fit.py), and they are rebuilt
with the contrast setting that was chosen."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from pipeline.contract import ModelMetadata
from training.models.family import Fitted, ImageData, ImageFamily, ImageRun, M
from training.models.feature_space.selection import fit_best_feature_model


class FeatureSpaceFamily(ImageFamily[M]):
    """A model in a frozen backbone's feature space (training.models.feature_space.model.FeatureSpaceAutoencoder).

    `fit` trains every candidate of the run (`run.candidates`: the run's model, or every feature-space model for
    `--model auto`) with contrast normalisation on and off, keeps the best on the validation defects and returns it
    under its own architecture name.
    """

    uses_backbone: ClassVar[bool] = True

    def fit(self, run: ImageRun, data: ImageData, device: torch.device) -> Fitted:
        return fit_best_feature_model(run, data, device)

    def rebuild_overrides(self, metadata: ModelMetadata) -> dict[str, Any]:
        selection = metadata.training_config.get("selection")
        return {"contrast_normalize": chosen_contrast(selection)} if selection else {}


def chosen_contrast(selection: list[dict[str, Any]]) -> bool:
    """Which contrast setting the selection kept: the row marked chosen (older models: the first with the best
    mean synthetic AUROC)."""
    marked = [row for row in selection if row.get("chosen")]
    best = (
        marked[0]
        if marked
        else max(selection, key=lambda row: (row["synthetic_image_auroc"] + row["synthetic_pixel_auroc"]) / 2)
    )
    return bool(best["contrast_normalize"])
