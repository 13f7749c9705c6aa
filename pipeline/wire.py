"""The frame wire format: payload bytes in the Kafka value, metadata in Kafka headers; one module encodes and decodes.

Size limits: a frame payload may be up to `Settings.max_frame_bytes`; producers use `max_request_size` and
consumers `max_partition_fetch_bytes` of `Settings.max_message_bytes` (frame + 64 KiB for headers); the
broker's `message.max.bytes` must be at least that. A larger payload is refused by the consumer (DLQ).

Every header is checked here, at the boundary, against what the database can store (text lengths, integer
ranges): a record the database would refuse is dead-lettered here instead of failing a batch transaction.
Images are checked from their header (signature, dimensions, decoded size) before a pixel is decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import cv2
import numpy as np

from pipeline.errors import ImageDecodeError, InvalidMessageError
from pipeline.imageheader import ImageHeader, ImageHeaderError, jpeg_header, png_header
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

# What the defects table can hold (pipeline/storage/tables.py; a test keeps the two in step).
MAX_ID_CHARS = 128  # camera-id, line-id
MAX_TRUTH_CHARS = 64  # ground-truth
MAX_SEQ = 2**63 - 1  # seq is a BIGINT
MAX_HEADERS = 64
MAX_HEADER_BYTES = 64 * 1024  # the headroom a Kafka record has beside its frame (settings.HEADER_HEADROOM_BYTES)


@dataclass(frozen=True)
class FrameLimits:
    """The most a frame may take: compressed bytes, and pixels once decoded (bombs are refused from the header)."""

    max_bytes: int
    max_pixels: int

    @property
    def max_decoded_bytes(self) -> int:
        # A largest 8-bit RGB frame: a 16-bit or RGBA image of as many pixels would take more than allowed.
        return self.max_pixels * 3


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
    values = header_values(headers or [])
    for name in (H_CONTENT_TYPE, H_CAMERA, H_CAPTURED, H_SHAPE, H_DTYPE):
        if not values.get(name):
            raise InvalidMessageError(f"missing header {name!r}")
    if values.get(H_VERSION, WIRE_VERSION) != WIRE_VERSION:
        raise InvalidMessageError(f"unsupported wire version {shown(values[H_VERSION])}")
    content_type = values[H_CONTENT_TYPE]
    if content_type not in CONTENT_TYPES:
        raise InvalidMessageError(f"unsupported content-type {shown(content_type)}")
    dtype = values[H_DTYPE]
    if dtype not in RAW_DTYPES:
        raise InvalidMessageError(f"unsupported dtype {shown(dtype)}")
    truth = values.get(H_TRUTH)
    return FrameMeta(
        content_type=content_type,
        camera_id=identifier_header(values, H_CAMERA, MAX_ID_CHARS),
        line_id=identifier_header(values, H_LINE, MAX_ID_CHARS) if values.get(H_LINE) else "unknown",
        captured_at=_captured_at(values[H_CAPTURED]),
        shape=_parse_shape(values[H_SHAPE]),
        dtype=dtype,
        seq=seq_header(values.get(H_SEQ, "0")),
        ground_truth=identifier_header(values, H_TRUTH, MAX_TRUTH_CHARS) if truth is not None else None,
        ground_truth_bbox=_parse_bbox(values.get(H_TRUTH_BOX)),
    )


def header_values(headers: Headers) -> dict[str, str]:
    """A record's headers as text, after the checks every record kind shares (count, total size, UTF-8); a name
    given twice keeps its last value. Frames and sensor blocks (pipeline.sensors.wire) both read theirs here."""
    if len(headers) > MAX_HEADERS:
        raise InvalidMessageError(f"{len(headers)} headers, at most {MAX_HEADERS} allowed")
    size = sum(len(name) + len(raw or b"") for name, raw in headers)
    if size > MAX_HEADER_BYTES:
        raise InvalidMessageError(f"headers take {size} bytes, at most {MAX_HEADER_BYTES} allowed")
    values: dict[str, str] = {}
    for name, raw in headers:
        try:
            values[name] = raw.decode("utf-8") if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise InvalidMessageError(f"header {shown(name)} is not UTF-8") from exc
    return values


def shown(text: str, limit: int = 40) -> str:
    """A header value quoted for an error message, cut short: a hostile header must not flood the DLQ reason."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def identifier_header(values: dict[str, str], name: str, max_chars: int) -> str:
    """The identifier in header `name` (a camera, line or device id), refused if longer than the database column
    or not printable text without surrounding spaces."""
    text = values[name]
    if len(text) > max_chars:
        raise InvalidMessageError(f"header {name!r} has {len(text)} characters, at most {max_chars} allowed")
    if not text.isprintable() or text != text.strip():
        raise InvalidMessageError(f"header {name!r} has control characters or surrounding spaces: {shown(text)}")
    return text


def _captured_at(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidMessageError(f"bad header {H_CAPTURED!r}: {shown(text)}") from exc


def seq_header(text: str) -> int:
    """The `seq` header's value: an integer the database's BIGINT holds."""
    try:
        seq = int(text)
    except ValueError as exc:
        raise InvalidMessageError(f"bad header {H_SEQ!r}: {shown(text)}") from exc
    if not 0 <= seq <= MAX_SEQ:
        raise InvalidMessageError(f"header {H_SEQ!r} out of range 0..2**63-1: {shown(text)}")
    return seq


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split("x"))
    except ValueError as exc:
        raise InvalidMessageError(f"bad header {H_SHAPE!r}: {shown(text)}") from exc
    valid = len(shape) in (2, 3) and all(0 < d <= 65535 for d in shape) and (len(shape) == 2 or shape[2] in (1, 3))
    if not valid:
        raise InvalidMessageError(f"bad header {H_SHAPE!r}: {shown(text)} (want HxW or HxWxC with C 1 or 3)")
    return shape


def _parse_bbox(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in json.loads(text))
    except (ValueError, TypeError):
        return None  # measurement-only header: a bad one does not make the frame invalid
    return (x, y, w, h)


def decode_frame(value: bytes | None, meta: FrameMeta, limits: FrameLimits, source: str = "") -> np.ndarray:
    """Payload -> uint8 image, checked against the limits and the shape header before it is decoded."""
    if not value:
        raise InvalidMessageError("empty value")
    if len(value) > limits.max_bytes:
        raise InvalidMessageError(f"value of {len(value)} bytes exceeds max_frame_bytes={limits.max_bytes}")
    height, width = meta.shape[:2]
    if height * width > limits.max_pixels:
        raise InvalidMessageError(f"shape {meta.shape} exceeds max_frame_pixels={limits.max_pixels}")
    if meta.content_type == RAW:
        image = _decode_raw(value, meta)
    else:
        header = _image_header(value, meta)
        if (header.height, header.width) != (height, width):
            raise InvalidMessageError(
                f"image header says {header.height}x{header.width}, shape header {meta.shape} (refused undecoded)"
            )
        if header.decoded_bytes > limits.max_decoded_bytes:
            raise InvalidMessageError(
                f"image would decode to {header.decoded_bytes} bytes ({header.channels} channels, "
                f"{8 * header.sample_bytes}-bit), over 3 x max_frame_pixels={limits.max_decoded_bytes}"
            )
        try:
            image = decode_image(value, source)
        except ImageDecodeError as exc:
            raise InvalidMessageError(exc.reason) from exc
    expected = meta.shape if len(meta.shape) == 3 and meta.shape[2] == 3 else meta.shape[:2]
    if image.shape != expected:
        raise InvalidMessageError(f"decoded shape {image.shape} does not match header shape {meta.shape}")
    return image


def _image_header(value: bytes, meta: FrameMeta) -> ImageHeader:
    """The payload's own header, which must be of the format its content-type names (OpenCV decodes any)."""
    try:
        return png_header(value) if meta.content_type == PNG else jpeg_header(value)
    except ImageHeaderError as exc:
        raise InvalidMessageError(f"{meta.content_type}: {exc}") from exc


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
