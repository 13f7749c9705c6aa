"""`feature-cae`: the feature-reconstruction autoencoder on a frozen backbone (model.py) and its family (family.py:
the feature-space training, latent hook)."""

from training.models.feature_cae.family import FEATURE_CAE, FeatureCAEFamily
from training.models.feature_cae.model import FeatureCAE, FeatureCAEConfig

__all__ = ["FEATURE_CAE", "FeatureCAE", "FeatureCAEConfig", "FeatureCAEFamily"]
