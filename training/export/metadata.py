"""The contract's metadata written into ONNX files, torch-free: export, recalibration, `quantize` and the fp16
conversion all write it here."""

from __future__ import annotations

from pathlib import Path

import onnx

from pipeline.contract import ModelMetadata


def write_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the model's metadata_props with `metadata`."""
    write_props(proto, metadata.to_props())


def write_props(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace the model's metadata_props with `props`."""
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "lineguard"


def update_metadata(path: Path, metadata: ModelMetadata) -> None:
    """Rewrite the metadata of an exported file in place (e.g. after re-calibration)."""
    proto = onnx.load(str(path))
    write_metadata(proto, metadata)
    onnx.save(proto, str(path))
