"""Verdict stage: regions from the anomaly map, boxes mapped back to the original frame through the resize."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from model_factory import build_tiny_model, tiny_metadata

from pipeline.decode import Decoded
from pipeline.inference import OnnxModel
from pipeline.preprocess import InputSpec, preprocess
from pipeline.verdict import find_regions, judge, overlay_png
from pipeline.wire import PNG, encode_frame, parse_headers


def heat_with_box(size: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    heat = np.zeros((1, size, size), np.float32)
    heat[0, y : y + h, x : x + w] = 1.0
    return heat


def test_stretch_boxes_scale_per_axis() -> None:
    spec = InputSpec(size=64, channels=1, resize_mode="stretch")
    regions = find_regions(heat_with_box(64, 16, 8, 8, 4), 0.5, (128, 256), spec)
    assert [(r.x, r.y, r.w, r.h) for r in regions] == [(64, 16, 32, 8)]


def test_letterbox_boxes_remove_the_padding() -> None:
    spec = InputSpec(size=64, channels=1, resize_mode="letterbox")
    # A 256x128 (w x h) frame is scaled by 1/4 to 64x32 and padded by 16 rows on top.
    regions = find_regions(heat_with_box(64, 8, 16 + 4, 16, 8), 0.5, (128, 256), spec)
    assert [(r.x, r.y, r.w, r.h) for r in regions] == [(32, 16, 64, 32)]


def test_separate_regions_and_noise() -> None:
    spec = InputSpec(size=32, channels=1)
    heat = heat_with_box(32, 2, 2, 4, 4) + heat_with_box(32, 20, 20, 6, 6) * 2
    heat[0, 30, 0] = 5.0  # a single hot pixel is noise, not a region
    regions = find_regions(heat, 0.5, (32, 32), spec)
    assert [(r.x, r.y, r.w, r.h) for r in regions] == [(20, 20, 6, 6), (2, 2, 4, 4)]
    assert regions[0].peak == pytest.approx(2.0)


def test_a_faint_shoulder_of_a_strong_region_is_not_a_second_defect() -> None:
    spec = InputSpec(size=32, channels=1)
    heat = heat_with_box(32, 20, 20, 6, 6) * 3.0 + heat_with_box(32, 2, 2, 4, 4) * 0.6
    regions = find_regions(heat, 0.5, (32, 32), spec)
    assert [(r.x, r.y, r.w, r.h) for r in regions] == [(20, 20, 6, 6)]


def test_pieces_of_one_defect_cut_by_the_threshold_are_one_box() -> None:
    spec = InputSpec(size=64, channels=1)
    heat = heat_with_box(64, 10, 10, 6, 6) + heat_with_box(64, 18, 10, 6, 6)  # 2 px apart
    heat += heat_with_box(64, 50, 50, 6, 6)  # far away: its own box
    regions = find_regions(heat, 0.5, (64, 64), spec)
    assert sorted((r.x, r.y, r.w, r.h) for r in regions) == [(10, 10, 14, 6), (50, 50, 6, 6)]
    assert sorted(r.area for r in regions) == [36, 72]


def test_overlay_is_a_png() -> None:
    data = overlay_png(np.zeros((1, 32, 32), np.float32), heat_with_box(32, 4, 4, 8, 8), 0.5)
    assert data.startswith(b"\x89PNG")


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_boxes_map_back_through_the_resize_preprocess_did(mode: str) -> None:
    # One geometry (preprocess.placement) for the resize and the way back: a box in the frame is
    # found where it was after a round trip through the model-size input.
    frame = np.zeros((90, 240), np.uint8)
    frame[30:60, 120:180] = 255
    spec = InputSpec(size=64, channels=1, resize_mode=mode)  # type: ignore[arg-type]
    heat = preprocess(frame, spec)
    [region] = find_regions(heat, 0.5, frame.shape, spec)
    assert abs(region.x - 120) <= 4 and abs(region.y - 30) <= 4
    assert abs(region.w - 60) <= 8 and abs(region.h - 30) <= 8


def test_a_frame_the_model_scores_nan_is_rejected_not_stored(tmp_path: Path) -> None:
    # The model's score is NaN below 0.05: a flat frame gets NaN, a frame with a sharp spot a real score.
    model = OnnxModel(build_tiny_model(tmp_path / "nan.onnx", tiny_metadata(size=32), nan_below=0.05), False)
    spec = model.metadata.input_spec
    flat = np.full((64, 64), 120, np.uint8)
    spotted = flat.copy()
    spotted[30:34, 30:34] = 255
    frames = [decoded(flat, spec, offset=0), decoded(spotted, spec, offset=1)]
    rejected: list[tuple[int, str]] = []
    results = judge(model, frames, False, lambda record, reason: rejected.append((record.offset, reason)))
    assert [r.source.offset for r in results] == [1] and np.isfinite(results[0].score)
    assert rejected == [(0, "model output is not finite (score nan)")]
    with pytest.raises(ValueError, match="not finite"):
        judge(model, frames, False)


def decoded(image: np.ndarray, spec: InputSpec, offset: int) -> Decoded:
    meta = parse_headers(encode_frame(image, camera_id="c", content_type=PNG).headers)
    record = SimpleNamespace(topic="frames", partition=0, offset=offset, value=b"")
    return Decoded(record, meta, image.shape, preprocess(image, spec))


@pytest.mark.parametrize(
    ("shape", "spec"),
    [
        ((32, 32), InputSpec(size=32, channels=1, resize_mode="stretch")),  # at the model size: no resize
        ((48, 40, 3), InputSpec(size=32, channels=3, resize_mode="letterbox")),
        ((20, 24, 3), InputSpec(size=32, channels=1, resize_mode="stretch")),
    ],
)
def test_a_frame_preprocessed_into_its_batch_slot_is_the_frame_preprocessed_alone(
    shape: tuple[int, ...], spec: InputSpec
) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    batch = np.full((3, spec.channels, spec.size, spec.size), np.nan, dtype=np.float32)
    written = preprocess(image, spec, out=batch[1])
    assert np.shares_memory(written, batch[1])  # written in place, no copy to stack later
    np.testing.assert_array_equal(batch[1], preprocess(image, spec))
    assert np.isnan(batch[0]).all() and np.isnan(batch[2]).all()
