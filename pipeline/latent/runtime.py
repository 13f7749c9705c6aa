"""Encoder and decoder ONNX files run with onnxruntime: frames to embeddings and latents, latents to images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.conditions import ConditionMap
from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME
from pipeline.errors import LineGuardError
from pipeline.latent.contract import (
    DECODER_KIND,
    EMBEDDING_OUTPUT_NAME,
    ENCODER_KIND,
    IMAGE_OUTPUT_NAME,
    LATENT_INPUT_NAME,
    LATENT_OUTPUT_NAME,
    LatentSpec,
    find_latent_file,
)
from pipeline.preprocess import preprocess_batch
from pipeline.providers import open_session

log = logging.getLogger(__name__)


def open_latent_session(path: Path, prefer_gpu: bool) -> ort.InferenceSession:
    session = open_session(str(path), path, prefer_gpu)
    log.info("%s runs on %s", path.name, session.get_providers()[0])
    return session


class Encoder:
    """An encoder-only ONNX: uint8 frames (any size) -> preprocessed as in training -> embeddings and latents."""

    def __init__(self, path: Path, prefer_gpu: bool = True) -> None:
        self.path, self.spec = find_latent_file(Path(path), ENCODER_KIND)
        self.session = open_latent_session(self.path, prefer_gpu)
        self.conditions = ConditionMap(self.spec.condition) if self.spec.condition is not None else None

    def run(self, images: Sequence[np.ndarray], conditions: Sequence[str | None] = ()) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings N x E, latents N x D) of the images; `conditions` are the camera ids of a conditional model."""
        feed = {INPUT_NAME: preprocess_batch(list(images), self.spec.input_spec)}
        if self.conditions is not None:
            values = list(conditions) or [None] * len(images)
            feed[CONDITION_INPUT_NAME] = self.conditions.indices(values)
        embedding, latent = self.session.run([EMBEDDING_OUTPUT_NAME, LATENT_OUTPUT_NAME], feed)
        return embedding, latent

    def embed(self, images: Sequence[np.ndarray], conditions: Sequence[str | None] = (), chunk: int = 32) -> np.ndarray:
        """Embeddings N x E, `chunk` frames per run."""
        parts = [
            self.run(images[i : i + chunk], conditions[i : i + chunk] if conditions else ())[0]
            for i in range(0, len(images), chunk)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.spec.embedding_size or 0), np.float32)


class Decoder:
    """A decoder-only ONNX of a variational model: latents (and condition names) -> uint8 images."""

    def __init__(self, path: Path, prefer_gpu: bool = True) -> None:
        self.path, self.spec = find_latent_file(Path(path), DECODER_KIND)
        self.session = open_latent_session(self.path, prefer_gpu)

    def condition_index(self, condition: str | None) -> int:
        """Index of a vocabulary value (0, the unconditional path, for None); an unknown value is an error."""
        values = self.spec.condition_values
        if condition is None:
            return 0
        if not values:
            raise LineGuardError(f"{self.path.name} is not conditional: leave out --condition")
        if condition not in values:
            raise LineGuardError(f"unknown condition {condition!r}; known: {', '.join(values)}")
        return values.index(condition) + 1

    def decode(self, latents: np.ndarray, condition: str | None = None) -> list[np.ndarray]:
        """uint8 images (H x W gray or H x W x 3 RGB) of N x D latents."""
        feed = {LATENT_INPUT_NAME: np.ascontiguousarray(latents, dtype=np.float32)}
        if self.spec.condition is not None:
            feed[CONDITION_INPUT_NAME] = np.full(len(latents), self.condition_index(condition), dtype=np.int64)
        (images,) = self.session.run([IMAGE_OUTPUT_NAME], feed)
        pixels = np.clip(images * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return [p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0) for p in pixels]


def check_pair(encoder: LatentSpec, decoder: LatentSpec) -> None:
    """Interpolation encodes with one file and decodes with the other: they must be the same model."""
    same = (encoder.model_name, encoder.model_version, encoder.latent_size)
    if same != (decoder.model_name, decoder.model_version, decoder.latent_size):
        raise LineGuardError(
            f"encoder {encoder.model_name} v{encoder.model_version} ({encoder.latent_size} latents) does not match "
            f"decoder {decoder.model_name} v{decoder.model_version} ({decoder.latent_size})"
        )
