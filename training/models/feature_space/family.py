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
    # the shape fields of models trained before the selection recorded them (FeatureSpaceAutoencoder.shape_fields)
    fields_before_record: ClassVar[dict[str, Any]] = {}

    def fit(self, run: ImageRun, data: ImageData, device: torch.device) -> Fitted:
        return fit_best_feature_model(run, data, device)

    def rebuild_overrides(self, metadata: ModelMetadata) -> dict[str, Any]:
        selection = metadata.training_config.get("selection")
        if not selection:
            return {}
        chosen = chosen_row(selection)
        shape = chosen.get("model_fields", self.fields_before_record)
        return {"contrast_normalize": bool(chosen["contrast_normalize"]), **shape}


def chosen_row(selection: list[dict[str, Any]]) -> dict[str, Any]:
    """The setting the selection kept: the row marked chosen (older models: the first with the best mean synthetic
    AUROC)."""
    marked = [row for row in selection if row.get("chosen")]
    if marked:
        return marked[0]
    return max(selection, key=lambda row: (row["synthetic_image_auroc"] + row["synthetic_pixel_auroc"]) / 2)
