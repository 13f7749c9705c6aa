"""`reverse-distillation`: teacher backbone, one-class bottleneck and student decoder (model.py) and its family
(family.py: the feature-space training, latent hook)."""

from training.models.reverse_distillation.family import REVERSE_DISTILLATION, ReverseDistillationFamily
from training.models.reverse_distillation.model import ReverseDistillation, ReverseDistillationConfig

__all__ = ["REVERSE_DISTILLATION", "ReverseDistillation", "ReverseDistillationConfig", "ReverseDistillationFamily"]
