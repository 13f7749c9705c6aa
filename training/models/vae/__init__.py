"""`vae`: the variational convolutional autoencoder (model.py) and its family (family.py: training step, latent code,
decoder hooks)."""

from training.models.vae.family import VAE, VAEFamily
from training.models.vae.model import ConvVAE, VAEConfig

__all__ = ["VAE", "ConvVAE", "VAEConfig", "VAEFamily"]
