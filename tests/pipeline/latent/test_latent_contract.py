"""Encoder and decoder properties, read into a pydantic dataclass: a bad one is a ModelLoadError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.contract import ConditionSpec
from pipeline.errors import ModelLoadError
from pipeline.latent.contract import parse_spec

PROPS = {"kind": "encoder", "input_size": "32", "input_channels": "1", "latent_size": "64", "embedding_size": "16"}


def test_props_are_read_into_their_types() -> None:
    spec = parse_spec(Path("m.encoder.onnx"), PROPS | {"condition": '{"source": "camera-id", "values": ["a"]}'})
    assert (spec.input_size, spec.latent_size, spec.embedding_size, spec.resize_mode) == (32, 64, 16, "stretch")
    assert spec.condition == ConditionSpec("camera-id", ("a",)) and spec.condition_values == ("a",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_size": "x"}, "input_size: Input should be a valid integer"),
        ({"latent_size": None}, "latent_size: missing"),
        ({"condition": '{"source": "serial", "values": ["a"]}'}, "condition.source"),
        ({"condition": "{"}, "bad encoder properties: Expecting property name"),
    ],
)
def test_a_bad_property_is_a_model_load_error_naming_it(change: dict[str, str | None], message: str) -> None:
    props = {k: v for k, v in (PROPS | change).items() if v is not None}
    with pytest.raises(ModelLoadError, match=message):
        parse_spec(Path("m.encoder.onnx"), props)
