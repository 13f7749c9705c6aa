"""Pipeline stages as plain functions: record -> preprocessed input, one batched inference -> verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pipeline.errors import InvalidMessageError
from pipeline.inference import OnnxModel
from pipeline.preprocess import preprocess
from pipeline.results import FrameResult, Source
from pipeline.verdict import find_regions, overlay_png
from pipeline.wire import FrameMeta, decode_frame, parse_headers


@dataclass(frozen=True)
class Decoded:
    """A record that passed the wire-format checks, preprocessed for the model."""

    record: Any
    meta: FrameMeta
    shape: tuple[int, ...]
    model_input: np.ndarray  # C x H x W float32, from pipeline.preprocess (the path training uses)


def decode_record(record: Any, model: OnnxModel, max_bytes: int) -> Decoded:
    """Headers + payload -> preprocessed model input; InvalidMessageError for anything that breaks the format."""
    meta = parse_headers(record.headers)
    image = decode_frame(record.value, meta, max_bytes, f"{record.topic}[{record.partition}]@{record.offset}")
    return Decoded(record, meta, image.shape, preprocess(image, model.metadata.input_spec))


def judge(model: OnnxModel, frames: list[Decoded], store_images: bool) -> list[FrameResult]:
    """One batched inference, then the verdict and regions per frame."""
    if not frames:
        return []
    scores = model.score(np.stack([f.model_input for f in frames]))
    meta = model.metadata
    detected_at = datetime.now(UTC)
    results = []
    for index, frame in enumerate(frames):
        score = float(scores.score[index])
        is_defect = score > meta.image_threshold
        regions: list[dict[str, Any]] = []
        overlay = None
        if is_defect:
            heat = scores.anomaly_map[index]
            found = find_regions(heat, meta.pixel_threshold, frame.shape, meta.input_spec)
            regions = [r.as_dict() for r in found]
            overlay = overlay_png(frame.model_input, heat, meta.pixel_threshold) if store_images else None
        record = frame.record
        results.append(
            FrameResult(
                source=Source(record.topic, record.partition, record.offset),
                camera_id=frame.meta.camera_id,
                line_id=frame.meta.line_id,
                seq=frame.meta.seq,
                captured_at=frame.meta.captured_at,
                detected_at=detected_at,
                score=score,
                threshold=meta.image_threshold,
                is_defect=is_defect,
                regions=regions,
                frame=record.value if is_defect and store_images else None,
                frame_content_type=frame.meta.content_type if is_defect and store_images else None,
                overlay_png=overlay,
                ground_truth=frame.meta.ground_truth,
            )
        )
    return results


def try_decode(record: Any, model: OnnxModel, max_bytes: int) -> Decoded | InvalidMessageError:
    try:
        return decode_record(record, model, max_bytes)
    except InvalidMessageError as exc:
        return exc
    except Exception as exc:  # anything else about one record must not stop the line
        return InvalidMessageError(f"undecodable record: {type(exc).__name__}: {exc}")
