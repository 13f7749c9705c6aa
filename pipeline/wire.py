"""The frame wire format: payload bytes in the Kafka value, metadata in Kafka headers; one module encodes and decodes.

Size limits: a frame payload may be up to `Settings.max_frame_bytes`; producers use `max_request_size` and
consumers `max_partition_fetch_bytes` of `Settings.max_message_bytes` (frame + 64 KiB for headers); the
broker's `message.max.bytes` must be at least that. A larger payload is refused by the consumer (DLQ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import cv2
import numpy as np

from pipeline.errors import ImageDecodeError, InvalidMessageError
from pipeline.preprocess import decode_image

WIRE_VERSION = "1"
JPEG = "image/jpeg"
PNG = "image/png"
RAW = "application/x-raw"
CONTENT_TYPES = (JPEG, PNG, RAW)
RAW_DTYPES = ("uint8", "uint16")

H_VERSION = "lg-version"
H_CONTENT_TYPE = "content-type"
H_CAMERA = "camera-id"
H_LINE = "line-id"
H_CAPTURED = "capture-ts-ms"
H_SHAPE = "shape"
H_DTYPE = "dtype"
H_SEQ = "seq"
H_TRUTH = "ground-truth"  # simulator only: "good" or a defect type, for measurement
H_TRUTH_BOX = "ground-truth-bbox"  # simulator only: JSON [x, y, w, h] in frame pixels

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class FrameMeta:
    """The metadata a frame carries in its headers."""

    content_type: str
    camera_id: str
    line_id: str
    captured_at: datetime
    shape: tuple[int, ...]
    dtype: str
    seq: int
    ground_truth: str | None = None
    ground_truth_bbox: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class EncodedFrame:
    """A frame ready for `KafkaProducer.send(topic, key=..., value=..., headers=...)`."""

    key: bytes
    value: bytes
    headers: Headers


def encode_frame(
    image: np.ndarray,
    *,
    camera_id: str,
    line_id: str = "line-1",
    seq: int = 0,
    captured_at: datetime | None = None,
    content_type: str = JPEG,
    jpeg_quality: int = 90,
    ground_truth: str | None = None,
    ground_truth_bbox: tuple[int, int, int, int] | None = None,
) -> EncodedFrame:
    """Encode a uint8 gray (HxW) or RGB (HxWx3) image with its headers; the key is the camera id."""
    if content_type == JPEG:
        ok, buffer = cv2.imencode(".jpg", _to_bgr(image), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        value = buffer.tobytes() if ok else b""
    elif content_type == PNG:
        ok, buffer = cv2.imencode(".png", _to_bgr(image))
        value = buffer.tobytes() if ok else b""
    elif content_type == RAW:
        value = np.ascontiguousarray(image).tobytes()
    else:
        raise ValueError(f"content_type must be one of {CONTENT_TYPES}, got {content_type!r}")
    stamp = captured_at or datetime.now(UTC)
    headers: Headers = [
        (H_VERSION, WIRE_VERSION.encode()),
        (H_CONTENT_TYPE, content_type.encode()),
        (H_CAMERA, camera_id.encode()),
        (H_LINE, line_id.encode()),
        (H_CAPTURED, str(int(stamp.timestamp() * 1000)).encode()),
        (H_SHAPE, "x".join(str(d) for d in image.shape).encode()),
        (H_DTYPE, str(image.dtype).encode()),
        (H_SEQ, str(seq).encode()),
    ]
    if ground_truth is not None:
        headers.append((H_TRUTH, ground_truth.encode()))
    if ground_truth_bbox is not None:
        headers.append((H_TRUTH_BOX, json.dumps(list(ground_truth_bbox)).encode()))
    return EncodedFrame(key=camera_id.encode(), value=value, headers=headers)


def _to_bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image


def parse_headers(headers: Headers | None) -> FrameMeta:
    """Read and check a record's headers; raise InvalidMessageError naming the bad header."""
    values: dict[str, str] = {}
    for name, raw in headers or []:
        try:
            values[name] = raw.decode("utf-8") if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise InvalidMessageError(f"header {name!r} is not UTF-8") from exc
    for name in (H_CONTENT_TYPE, H_CAMERA, H_CAPTURED, H_SHAPE, H_DTYPE):
        if not values.get(name):
            raise InvalidMessageError(f"missing header {name!r}")
    if values.get(H_VERSION, WIRE_VERSION) != WIRE_VERSION:
        raise InvalidMessageError(f"unsupported wire version {values[H_VERSION]!r}")
    content_type = values[H_CONTENT_TYPE]
    if content_type not in CONTENT_TYPES:
        raise InvalidMessageError(f"unsupported content-type {content_type!r}")
    try:
        captured_ms = int(values[H_CAPTURED])
        captured_at = datetime.fromtimestamp(captured_ms / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidMessageError(f"bad header {H_CAPTURED!r}: {values[H_CAPTURED]!r}") from exc
    shape = _parse_shape(values[H_SHAPE])
    dtype = values[H_DTYPE]
    if dtype not in RAW_DTYPES:
        raise InvalidMessageError(f"unsupported dtype {dtype!r}")
    try:
        seq = int(values.get(H_SEQ, "0"))
    except ValueError as exc:
        raise InvalidMessageError(f"bad header {H_SEQ!r}: {values[H_SEQ]!r}") from exc
    return FrameMeta(
        content_type=content_type,
        camera_id=values[H_CAMERA],
        line_id=values.get(H_LINE) or "unknown",
        captured_at=captured_at,
        shape=shape,
        dtype=dtype,
        seq=seq,
        ground_truth=values.get(H_TRUTH),
        ground_truth_bbox=_parse_bbox(values.get(H_TRUTH_BOX)),
    )


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split("x"))
    except ValueError as exc:
        raise InvalidMessageError(f"bad header {H_SHAPE!r}: {text!r}") from exc
    valid = len(shape) in (2, 3) and all(0 < d <= 32768 for d in shape) and (len(shape) == 2 or shape[2] in (1, 3))
    if not valid:
        raise InvalidMessageError(f"bad header {H_SHAPE!r}: {text!r} (want HxW or HxWxC with C 1 or 3)")
    return shape


def _parse_bbox(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in json.loads(text))
    except (ValueError, TypeError):
        return None  # measurement-only header: a bad one does not make the frame invalid
    return (x, y, w, h)


def decode_frame(value: bytes | None, meta: FrameMeta, max_bytes: int, source: str = "") -> np.ndarray:
    """Payload -> uint8 image, checked against the size limit and the shape header."""
    if not value:
        raise InvalidMessageError("empty value")
    if len(value) > max_bytes:
        raise InvalidMessageError(f"value of {len(value)} bytes exceeds max_frame_bytes={max_bytes}")
    if meta.content_type == RAW:
        image = _decode_raw(value, meta)
    else:
        try:
            image = decode_image(value, source)
        except ImageDecodeError as exc:
            raise InvalidMessageError(exc.reason) from exc
    expected = meta.shape if len(meta.shape) == 3 and meta.shape[2] == 3 else meta.shape[:2]
    if image.shape != expected:
        raise InvalidMessageError(f"decoded shape {image.shape} does not match header shape {meta.shape}")
    return image


def _decode_raw(value: bytes, meta: FrameMeta) -> np.ndarray:
    dtype = np.dtype(meta.dtype)
    expected = int(np.prod(meta.shape)) * dtype.itemsize
    if len(value) != expected:
        raise InvalidMessageError(f"raw value has {len(value)} bytes, shape {meta.shape} {meta.dtype} needs {expected}")
    image = np.frombuffer(value, dtype=dtype).reshape(meta.shape)
    if dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # same rule as decode_image for 16-bit cameras
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image
