"""The convolutional autoencoders trained from scratch: `cae` (model.py: denoising CAE with a defect-segmentation
head, the default without a backbone) and `cae-plain` (plain.py: reconstruction error only); family.py: their
family (training step and latent hook)."""

from training.models.cae.family import CAE, CAEFamily
from training.models.cae.model import CAEConfig, DenoisingSegmentingCAE
from training.models.cae.plain import PlainCAE, PlainCAEConfig

__all__ = ["CAE", "CAEConfig", "CAEFamily", "DenoisingSegmentingCAE", "PlainCAE", "PlainCAEConfig"]
