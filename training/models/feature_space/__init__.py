"""What the feature-space families (feature-cae, reverse-distillation) share: the model base on a frozen backbone
(model.py), training on cached features and the image restorer (fit.py), the choice among candidate settings on
validation defects (selection.py) and the family base (family.py)."""

from training.models.feature_space.family import FeatureSpaceFamily
from training.models.feature_space.model import (
    FeatureSpaceAutoencoder,
    FeatureSpaceConfig,
    ImageRestorer,
    upsample_to,
)

__all__ = ["FeatureSpaceAutoencoder", "FeatureSpaceConfig", "FeatureSpaceFamily", "ImageRestorer", "upsample_to"]
