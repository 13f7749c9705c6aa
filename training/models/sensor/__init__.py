"""The sensor models: 1-D convolutional autoencoders on windows of readings (cae.py: plain and denoising; vae.py:
variational) and their family (family.py: the window training step)."""

from training.models.sensor.cae import SensorCAE, SensorCAEConfig, SensorDAEConfig
from training.models.sensor.family import SENSOR, SensorWindowFamily
from training.models.sensor.vae import SensorVAE, SensorVAEConfig

__all__ = [
    "SENSOR",
    "SensorCAE",
    "SensorCAEConfig",
    "SensorDAEConfig",
    "SensorVAE",
    "SensorVAEConfig",
    "SensorWindowFamily",
]
