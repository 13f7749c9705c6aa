"""Encoder-only export of every registered model: I/O names, metadata, torch/onnxruntime parity, line runtime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from pipeline.contract import CONDITION_INPUT_NAME, INPUT_NAME, ConditionSpec
from pipeline.latent.contract import EMBEDDING_OUTPUT_NAME, ENCODER_KIND, LATENT_OUTPUT_NAME
from pipeline.latent.runtime import Encoder
from tests.training.test_models import SIZE, tiny_metadata
from training.export.encoder import EncoderGraph, export_encoder
from training.models import MODELS, create_model, model_entry


@pytest.mark.parametrize("name", sorted(MODELS))
def test_encoder_export_parity_and_runtime(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, 1, widths=(8, 8, 16, 16), latent_channels=8, head_width=4, image_size=SIZE).eval()
    metadata = tiny_metadata(name, 1)
    conditional = model_entry(name).conditional
    if conditional:
        metadata = replace(metadata, condition=ConditionSpec("camera-id", ("cam-a",)))
    out = tmp_path / f"{name}.encoder.onnx"

    assert export_encoder(model, metadata, out) < 1e-3  # the parity check raises above its tolerance

    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == ([INPUT_NAME, CONDITION_INPUT_NAME] if conditional else [INPUT_NAME])
    assert [o.name for o in proto.graph.output] == [EMBEDDING_OUTPUT_NAME, LATENT_OUTPUT_NAME]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["kind"] == ENCODER_KIND and props["architecture"] == name
    # the line-side runtime: uint8 frames of any size, preprocessed as in training; batch 5 never seen at export
    encoder = Encoder(out, prefer_gpu=False)
    frames = [np.random.default_rng(i).integers(0, 256, (40 + i, 50), dtype=np.uint8) for i in range(5)]
    embeddings, latents = encoder.run(frames, ["cam-a", None, "cam-z", "cam-a", None] if conditional else ())
    assert embeddings.shape == (5, int(props["embedding_size"]))
    assert latents.shape == (5, int(props["latent_size"]))
    # and the same numbers as torch on the same preprocessed pixels
    from pipeline.preprocess import preprocess_batch

    batch = torch.from_numpy(preprocess_batch(frames, encoder.spec.input_spec))
    condition = torch.tensor([1, 0, 0, 1, 0]) if conditional else None
    with torch.no_grad():
        expected = EncoderGraph(model, model_entry(name).family)(batch, condition)[0].numpy()
    assert np.abs(expected - embeddings).max() < 1e-3
