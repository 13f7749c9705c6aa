"""Verdict stage: one batched inference, score vs threshold, defect regions from the anomaly map, heatmap overlay."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

from pipeline.decode import Decoded
from pipeline.inference import BatchScores, OnnxModel
from pipeline.preprocess import InputSpec, placement
from pipeline.results import FrameResult, Source

Reject = Callable[[Any, str], None]  # (record, reason): the record goes to the dead-letter topic


def judge(
    model: OnnxModel, frames: list[Decoded], store_images: bool, reject: Reject | None = None
) -> list[FrameResult]:
    """Score the batch in one inference and show where each defect is: `score_batch`, then `Scored.with_evidence`."""
    return score_batch(model, frames, reject).with_evidence(store_images)


def score_batch(
    model: OnnxModel, frames: list[Decoded], reject: Reject | None = None, inputs: np.ndarray | None = None
) -> Scored:
    """The verdicts of one batch: one inference; a frame whose score is above the image threshold is a defect.

    A frame the model scores NaN or infinite (a corrupt model, an input it overflows on) has no verdict: it is
    handed to `reject` (or raises ValueError without one), never stored as a score the database cannot hold.
    Where the defects are (regions) and their images come after, in `Scored.with_evidence`, on flagged frames only.
    `inputs`: the frames' model inputs as one batch, when the caller decoded them into one (else they are stacked).
    """
    if not frames:
        return Scored(model, [], [])
    conditions = frame_conditions(model, frames)
    if inputs is None:
        inputs = np.stack([f.model_input for f in frames])
    scores = model.score(inputs, conditions)
    finite = np.isfinite(scores.score) & np.isfinite(scores.anomaly_map).reshape(len(frames), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        reason = f"model output is not finite (score {float(scores.score[bad[0]])})"
        if reject is None:
            raise ValueError(reason)
        for i in bad:
            reject(frames[i].record, reason)
        keep = np.flatnonzero(finite)
        frames = [frames[i] for i in keep]
        conditions = conditions[keep] if conditions is not None else None
        scores = BatchScores(anomaly_map=scores.anomaly_map[keep], score=scores.score[keep])
    meta = model.metadata
    detected_at = datetime.now(UTC)
    defective = scores.score > meta.image_threshold
    results = [
        FrameResult(
            source=Source(frame.record.topic, frame.record.partition, frame.record.offset),
            camera_id=frame.meta.camera_id,
            line_id=frame.meta.line_id,
            seq=frame.meta.seq,
            captured_at=frame.meta.captured_at,
            detected_at=detected_at,
            score=float(score),
            threshold=meta.image_threshold,
            is_defect=bool(is_defect),
            ground_truth=frame.meta.ground_truth,
            ground_truth_box=frame.meta.ground_truth_bbox,
        )
        for frame, score, is_defect in zip(frames, scores.score.tolist(), defective.tolist(), strict=True)
    ]
    flagged = [
        Flagged(int(i), frames[i], scores.anomaly_map[i], None if conditions is None else int(conditions[i]))
        for i in np.flatnonzero(defective)
    ]
    return Scored(model, results, flagged)


@dataclass(frozen=True)
class Flagged:
    """A frame judged defective, with what showing where takes: its input, its anomaly map, its condition index."""

    index: int  # in Scored.results
    frame: Decoded
    anomaly_map: np.ndarray
    condition: int | None


@dataclass(frozen=True)
class Scored:
    """A judged batch: every frame's verdict, and the flagged frames whose evidence is still to be added.

    Scoring is the line's serial step; the evidence (regions, the heatmap overlay, the restored frame and their
    PNG encoding) is needed by flagged frames only and costs more per frame than the model on a fast model, so the
    consumer adds it on the writer's thread, fanned out over a pool, while the next batch is scored.
    """

    model: OnnxModel
    results: list[FrameResult]
    flagged: list[Flagged]

    def with_evidence(self, store_images: bool, pool: Executor | None = None) -> list[FrameResult]:
        """The results, each defect with its regions (and, with `store_images`, its frame, overlay and restored
        frame). `pool` spreads the flagged frames over its threads (OpenCV releases the GIL)."""
        if not self.flagged:
            return self.results
        restored = restored_pngs(self.model, self.flagged) if store_images else {}
        meta = self.model.metadata

        def evidence(flagged: Flagged) -> FrameResult:
            frame, heat = flagged.frame, flagged.anomaly_map
            found = find_regions(heat, meta.pixel_threshold, frame.shape, meta.input_spec)
            if not found:
                # A frame judged defective always shows where: its peak is above the image threshold even where
                # no location passes the pixel threshold; its strongest component above the image threshold.
                found = find_regions(heat, meta.image_threshold, frame.shape, meta.input_spec)[:1]
            images: dict[str, Any] = {}
            if store_images:
                images = {
                    "frame": frame.record.value,
                    "frame_content_type": frame.meta.content_type,
                    "overlay_png": overlay_png(frame.model_input, heat, meta.pixel_threshold),
                    "restored_png": restored.get(flagged.index),
                }
            return replace(self.results[flagged.index], regions=[r.as_dict() for r in found], **images)

        mapper = pool.map if pool is not None and len(self.flagged) > 1 else map
        finished = dict(zip((f.index for f in self.flagged), mapper(evidence, self.flagged), strict=True))
        return [finished.get(i, result) for i, result in enumerate(self.results)]


def frame_conditions(model: OnnxModel, frames: list[Decoded]) -> np.ndarray | None:
    """Condition index per frame for a conditional model (camera id or header via its vocabulary); None otherwise."""
    if model.conditions is None:
        return None
    return model.conditions.indices([model.conditions.value_of(f.meta, f.record.headers) for f in frames])


def restored_pngs(model: OnnxModel, flagged: list[Flagged]) -> dict[int, bytes]:
    """PNG of the model's restored frame for each flagged frame, by result index (one extra inference, defects only)."""
    if not flagged:
        return {}
    conditions = None if flagged[0].condition is None else np.array([f.condition for f in flagged], dtype=np.int64)
    restored = model.restore(np.stack([f.frame.model_input for f in flagged]), conditions)
    return {f.index: image_png(image) for f, image in zip(flagged, restored, strict=True)}


# Every defect's images are encoded on the line, so speed beats size: on 256 px overlays of the shared sets' images
# the "up" filter with run-length deflate encodes in about 40 % of the time of libpng's adaptive filters at level 1,
# for files about the same size (docs/BENCHMARKS.md, issue 19).
FAST_PNG = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_UP,
]


def image_png(image: np.ndarray) -> bytes:
    """A C x H x W float image in [0, 1] as PNG (gray or RGB)."""
    pixels = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    pixels = pixels[0] if pixels.shape[0] == 1 else cv2.cvtColor(pixels.transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", pixels, FAST_PNG)
    return buffer.tobytes() if ok else b""


@dataclass(frozen=True)
class Region:
    """One connected defect region, its box in original-frame pixels."""

    x: int
    y: int
    w: int
    h: int
    area: int  # pixels above the threshold, at model resolution
    peak: float

    def as_dict(self) -> dict[str, float | int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "area": self.area, "peak": round(self.peak, 6)}


# A component whose peak rises less than this share of the strongest one's height above the pixel threshold is the
# strongest defect's shoulder or background texture, not a second defect.
MIN_RELATIVE_PEAK = 0.25
# A region's box spans the part of its component above half its height over the threshold (full width at half
# maximum): the smoothed map spreads a small defect over the model's receptive field, and the box at the threshold
# itself would be that spread, not the defect.
BOX_LEVEL = 0.5


def find_regions(
    anomaly_map: np.ndarray, pixel_threshold: float, frame_shape: tuple[int, ...], spec: InputSpec
) -> list[Region]:
    """Defect boxes in frame pixels, strongest first.

    Connected components of the map above the pixel threshold, at least a few map cells large; weak shoulders of
    a stronger region dropped; each box at its component's half height; boxes closer than a map cell merged into
    one; mapped back through the same resize the input went through.
    """
    heat = anomaly_map.reshape(anomaly_map.shape[-2:])
    size = heat.shape[-1]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((heat > pixel_threshold).astype(np.uint8), 8)
    min_area = max(4, round((size / 64) ** 2))  # isolated pixels are compression noise, not defects
    if count <= 1 or not (stats[1:, cv2.CC_STAT_AREA] >= min_area).any():
        return []
    # Every component at once, over the pixels above the threshold only (a noisy map has hundreds of components):
    # each one's peak, then the box of its pixels at or above half its height over the threshold.
    inside = np.flatnonzero(labels)
    label_of, value = labels.ravel()[inside], heat.ravel()[inside]
    peaks = np.full(count, -np.inf)
    np.maximum.at(peaks, label_of, value)
    half = (pixel_threshold + BOX_LEVEL * (peaks - pixel_threshold)).astype(heat.dtype)
    at_half = value >= half[label_of]
    rows, cols, owner = inside[at_half] // heat.shape[1], inside[at_half] % heat.shape[1], label_of[at_half]
    low = np.full((2, count), np.iinfo(np.int64).max)
    high = np.full((2, count), -1)
    for axis, where in enumerate((cols, rows)):
        np.minimum.at(low[axis], owner, where)
        np.maximum.at(high[axis], owner, where)
    found = [  # [x0, y0, x1, y1], area, peak
        ([int(low[0, k]), int(low[1, k]), int(high[0, k]) + 1, int(high[1, k]) + 1], int(area), float(peaks[k]))
        for k, area in enumerate(stats[:, cv2.CC_STAT_AREA])
        if k > 0 and area >= min_area
    ]
    if not found:
        return []
    strongest = max(peak for _, _, peak in found)
    floor = pixel_threshold + MIN_RELATIVE_PEAK * (strongest - pixel_threshold)
    kept = merge_near_boxes([f for f in found if f[2] >= floor], gap=max(1, size // 16))
    to_frame = _box_mapper(frame_shape[:2], spec)
    regions = [
        Region(*to_frame(x0, y0, x1 - x0, y1 - y0), area=area, peak=peak) for (x0, y0, x1, y1), area, peak in kept
    ]
    regions.sort(key=lambda r: r.peak, reverse=True)
    return regions


def merge_near_boxes(boxes: list[tuple[list[int], int, float]], gap: int) -> list[tuple[list[int], int, float]]:
    """Union of boxes that overlap or lie within `gap` pixels of each other, until none do (one defect that the
    threshold cut into pieces is one box); areas add up, the peak is the larger."""
    merged = [(list(box), area, peak) for box, area, peak in boxes]
    changed = True
    while changed and len(merged) > 1:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i][0], merged[j][0]
                if a[0] - gap <= b[2] and b[0] - gap <= a[2] and a[1] - gap <= b[3] and b[1] - gap <= a[3]:
                    box = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    merged[i] = (box, merged[i][1] + merged[j][1], max(merged[i][2], merged[j][2]))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


BoxMapper = Callable[[int, int, int, int], tuple[int, int, int, int]]


def _box_mapper(frame_hw: tuple[int, ...], spec: InputSpec) -> BoxMapper:
    """Model-input boxes back to frame pixels, through the placement `preprocess` resized the frame with."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    place = placement(frame_hw, spec.size, spec.resize_mode)
    sx, sy, ox, oy = place.frame_per_input_x, place.frame_per_input_y, place.left, place.top

    def mapped(x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        x0 = int(np.clip(np.floor((x - ox) * sx), 0, width - 1))
        y0 = int(np.clip(np.floor((y - oy) * sy), 0, height - 1))
        x1 = int(np.clip(np.ceil((x + w - ox) * sx), x0 + 1, width))
        y1 = int(np.clip(np.ceil((y + h - oy) * sy), y0 + 1, height))
        return x0, y0, x1 - x0, y1 - y0

    return mapped


def overlay_png(model_input: np.ndarray, anomaly_map: np.ndarray, pixel_threshold: float) -> bytes:
    """The preprocessed frame with the anomaly map as a colour heatmap on top, PNG-encoded, at model size."""
    base = np.clip(model_input.mean(axis=0) * 255.0, 0, 255).astype(np.uint8)
    heat = anomaly_map.reshape(anomaly_map.shape[-2:])
    # Scale so the pixel threshold sits at mid-colour: anything red is above it.
    norm = np.clip(heat / (2.0 * max(pixel_threshold, 1e-9)) * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(norm, cv2.COLORMAP_JET)
    blended = cv2.addWeighted(cv2.cvtColor(base, cv2.COLOR_GRAY2BGR), 0.6, colour, 0.4, 0)
    ok, buffer = cv2.imencode(".png", blended, FAST_PNG)
    return buffer.tobytes() if ok else b""
