"""Decode stage: a Kafka record -> checked headers, decoded frame, preprocessed model input, or why it is invalid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import InvalidMessageError
from pipeline.inference import OnnxModel
from pipeline.preprocess import preprocess
from pipeline.wire import FrameLimits, FrameMeta, decode_frame, parse_headers


@dataclass(frozen=True)
class Decoded:
    """A record that passed the wire-format checks, preprocessed for the model."""

    record: Any
    meta: FrameMeta
    shape: tuple[int, ...]
    model_input: np.ndarray  # C x H x W float32, from pipeline.preprocess (the path training uses)


def decode_record(record: Any, model: OnnxModel, limits: FrameLimits, out: np.ndarray | None = None) -> Decoded:
    """Headers + payload -> preprocessed model input (written into `out` when given: a slot of the batch buffer);
    InvalidMessageError for anything that breaks the format."""
    meta = parse_headers(record.headers)
    image = decode_frame(record.value, meta, limits, f"{record.topic}[{record.partition}]@{record.offset}")
    return Decoded(record, meta, image.shape, preprocess(image, model.metadata.input_spec, out))


def try_decode(
    record: Any, model: OnnxModel, limits: FrameLimits, out: np.ndarray | None = None
) -> Decoded | InvalidMessageError:
    """`decode_record`, with any failure returned as the error that routes the record to the dead-letter topic."""
    try:
        return decode_record(record, model, limits, out)
    except InvalidMessageError as exc:
        return exc
    except Exception as exc:  # anything else about one record must not stop the line
        return InvalidMessageError(f"undecodable record: {type(exc).__name__}: {exc}")
