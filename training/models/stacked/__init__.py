"""`stacked-ae`: the stacked autoencoder (model.py), its greedy layer-wise pretraining (pretraining.py) and its family
(family.py: pretraining phase, then the shared denoising step; latent hook)."""

from training.models.stacked.family import STACKED, StackedFamily
from training.models.stacked.model import StackedAE, StackedAEConfig

__all__ = ["STACKED", "StackedAE", "StackedAEConfig", "StackedFamily"]
