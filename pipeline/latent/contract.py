"""The encoder and decoder ONNX files beside a scoring model: their names, properties and how to find them.

`training.export.encoder` writes `<model>.encoder.onnx` (input `image`, outputs `embedding` and `latent`);
`training.export.decoder` writes `<model>.decoder.onnx` of variational models (input `latent`, output `image`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.contract import ConditionSpec
from pipeline.errors import LineGuardError, ModelLoadError
from pipeline.inference import read_props
from pipeline.preprocess import InputSpec

ENCODER_KIND = "encoder"
DECODER_KIND = "decoder"
EMBEDDING_OUTPUT_NAME = "embedding"
LATENT_OUTPUT_NAME = "latent"  # the encoder's flattened spatial code, which is also the decoder's input
LATENT_INPUT_NAME = "latent"
IMAGE_OUTPUT_NAME = "image"
POOLING = "mean+max"  # the embedding: the code's mean over locations, then its max
MAKE_ENCODER = "lineguard export-encoder MODEL.onnx (from its checkpoint), or train with --encoder-only-out ENC.onnx"


@dataclass(frozen=True)
class LatentSpec:
    """The properties of an encoder or decoder file that a caller needs (sizes, layout, condition vocabulary)."""

    kind: str
    model_name: str
    model_version: str
    architecture: str
    input_size: int
    input_channels: int
    resize_mode: str
    latent_size: int
    embedding_size: int | None
    condition: ConditionSpec | None

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.input_size, self.input_channels, self.resize_mode)  # type: ignore[arg-type]

    @property
    def condition_values(self) -> tuple[str, ...]:
        return self.condition.values if self.condition is not None else ()


def parse_spec(path: Path, props: dict[str, str]) -> LatentSpec:
    try:
        condition = ConditionSpec.from_json(json.loads(props["condition"])) if "condition" in props else None
        return LatentSpec(
            kind=props["kind"],
            model_name=props.get("model_name", ""),
            model_version=props.get("model_version", ""),
            architecture=props.get("architecture", ""),
            input_size=int(props["input_size"]),
            input_channels=int(props["input_channels"]),
            resize_mode=props.get("resize_mode", "stretch"),
            latent_size=int(props["latent_size"]),
            embedding_size=int(props["embedding_size"]) if "embedding_size" in props else None,
            condition=condition,
        )
    except (KeyError, ValueError) as exc:
        raise ModelLoadError(str(path), f"bad {props.get('kind', 'latent')} properties: {exc}") from exc


def sibling(model_path: Path, kind: str) -> Path:
    """`<model>.encoder.onnx` / `<model>.decoder.onnx` beside the scoring file `<model>.onnx`."""
    return model_path.with_name(f"{model_path.stem}.{kind}.onnx")


def find_latent_file(path: Path, kind: str) -> tuple[Path, LatentSpec]:
    """The encoder (or decoder) file for `path`: the file itself when it is one, else its sibling beside it."""
    props = read_props(path)
    if props.get("kind") == kind:
        return path, parse_spec(path, props)
    candidate = sibling(path, kind)
    if props.get("kind") in (ENCODER_KIND, DECODER_KIND):  # the other half of the pair: look beside its model
        candidate = sibling(path.with_name(path.name.removesuffix(f".{props['kind']}.onnx") + ".onnx"), kind)
        if not candidate.is_file():
            raise LineGuardError(
                f"{path} is the model's {props['kind']} and no {kind} lies beside it ({candidate.name})"
            )
    if candidate.is_file() and read_props(candidate).get("kind") == kind:
        return candidate, parse_spec(candidate, read_props(candidate))
    if kind == ENCODER_KIND:
        raise LineGuardError(
            f"{path} is a scoring model and no encoder lies beside it ({candidate.name}); make one: {MAKE_ENCODER}"
        )
    raise LineGuardError(
        f"{path} has no decoder beside it ({candidate.name}): train a vae or cvae, which writes one "
        "(docs/models/vae.md)"
    )
