"""`lineguard generate`: new images from a variational model's decoder, and interpolations between two images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.latent.runtime import Decoder, Encoder, check_pair
from pipeline.latent.sheets import strip, write_png
from pipeline.preprocess import read_image


def sample(decoder: Decoder, count: int, out: Path, condition: str | None = None, seed: int = 0) -> list[Path]:
    """`count` images decoded from latents drawn from N(0, I), the prior the model was trained towards."""
    decoder.condition_index(condition)  # an unknown condition fails before anything is written
    latents = np.random.default_rng(seed).standard_normal((count, decoder.spec.latent_size)).astype(np.float32)
    written = []
    for start in range(0, count, 32):
        for offset, image in enumerate(decoder.decode(latents[start : start + 32], condition)):
            written.append(write_png(out / f"sample_{start + offset:04d}.png", image))
    return written


def interpolate(
    encoder: Encoder, decoder: Decoder, first: Path, second: Path, steps: int, condition: str | None = None
) -> np.ndarray:
    """A strip: `steps` images decoded from latents on the straight line between the two images' codes
    (first and last are the two reconstructions)."""
    check_pair(encoder.spec, decoder.spec)
    _, codes = encoder.run([read_image(first), read_image(second)], [condition, condition])
    weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    latents = (1 - weights) * codes[0] + weights * codes[1]
    return strip(decoder.decode(latents, condition))


def write_interpolation(
    encoder: Encoder, decoder: Decoder, first: Path, second: Path, steps: int, out: Path, condition: str | None = None
) -> Path:
    return write_png(
        out / f"interpolation_{first.stem}_{second.stem}.png",
        interpolate(encoder, decoder, first, second, steps, condition),
    )
