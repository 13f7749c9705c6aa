"""`cvae`: the conditional VAE (model.py) and its family (family.py: the condition vocabulary from the data, training
step, latent code and decoder hooks that take the condition)."""

from training.models.cvae.family import CVAE, CVAEFamily
from training.models.cvae.model import ConditionalVAE, CVAEConfig, broadcast

__all__ = ["CVAE", "CVAEConfig", "CVAEFamily", "ConditionalVAE", "broadcast"]
