"""The encoder and decoder ONNX files beside a scoring model: their names, properties and how to find them.

`training.export.encoder` writes `<model>.encoder.onnx` (input `image`, outputs `embedding` and `latent`);
`training.export.decoder` writes `<model>.decoder.onnx` of variational models (input `latent`, output `image`).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from pipeline.contract import ConditionSpec
from pipeline.errors import LineGuardError, MetadataError, ModelLoadError
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
    """The properties of an encoder or decoder file that a caller needs (sizes, layout, condition vocabulary).

    A pydantic dataclass like the scoring model's metadata (pipeline.contract): the props are text, read into these
    types here."""

    kind: Literal["encoder", "decoder"] = Field(description="which half of the model the file holds")
    model_name: str = Field(default="", description="the scoring model's name")
    model_version: str = Field(default="", description="the scoring model's version")
    architecture: str = Field(default="", description="the scoring model's network")
    input_size: int = Field(ge=1, description="the encoder's image side (the decoder's output side)")
    input_channels: int = Field(ge=1, description="the encoder's image channels")
    resize_mode: str = Field(default="stretch", description="how images are brought to input_size")
    latent_size: int = Field(ge=1, description="length of the flattened spatial code")
    embedding_size: int | None = Field(default=None, ge=1, description="length of the embedding (encoders only)")
    condition: ConditionSpec | None = Field(default=None, description="conditional models' vocabulary")

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.input_size, self.input_channels, self.resize_mode)  # type: ignore[arg-type]

    @property
    def condition_values(self) -> tuple[str, ...]:
        return self.condition.values if self.condition is not None else ()


LATENT_PROPS = tuple(item.name for item in fields(LatentSpec))


def parse_spec(path: Path, props: dict[str, str]) -> LatentSpec:
    """The spec of an encoder or decoder file from its props; ModelLoadError naming the bad property."""
    what = f"bad {props.get('kind', 'latent')} properties"
    values: dict[str, Any] = {name: props[name] for name in LATENT_PROPS if name in props}
    try:
        if "condition" in values:
            values["condition"] = json.loads(values["condition"])
        return TypeAdapter(LatentSpec).validate_python(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        reason = "missing" if error["type"] == "missing" else f"{error['msg']}, got {error['input']!r}"
        raise ModelLoadError(str(path), f"{what}: {where}: {reason}") from exc
    except (ValueError, MetadataError) as exc:  # unreadable condition JSON, a bad condition block
        raise ModelLoadError(str(path), f"{what}: {exc}") from exc


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
    candidate_props = read_props(candidate) if candidate.is_file() else {}
    if candidate_props.get("kind") == kind:
        return candidate, parse_spec(candidate, candidate_props)
    if kind == ENCODER_KIND:
        raise LineGuardError(
            f"{path} is a scoring model and no encoder lies beside it ({candidate.name}); make one: {MAKE_ENCODER}"
        )
    raise LineGuardError(
        f"{path} has no decoder beside it ({candidate.name}): train a vae or cvae, which writes one "
        "(docs/models/vae.md)"
    )
