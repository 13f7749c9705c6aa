"""Wire format: encode/decode round trips and every way a record can be malformed."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidMessageError
from pipeline.wire import JPEG, PNG, RAW, decode_frame, encode_frame, parse_headers


def gray(h: int = 64, w: int = 80) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 200).astype(np.uint8)


@pytest.mark.parametrize("content_type", [PNG, RAW])
def test_lossless_round_trip(content_type: str) -> None:
    image = gray()
    frame = encode_frame(image, camera_id="cam-7", line_id="L2", seq=42, content_type=content_type)
    meta = parse_headers(frame.headers)
    assert (meta.camera_id, meta.line_id, meta.seq, meta.shape, meta.content_type) == (
        "cam-7",
        "L2",
        42,
        (64, 80),
        content_type,
    )
    assert frame.key == b"cam-7"
    assert np.array_equal(decode_frame(frame.value, meta, 1 << 20), image)


def test_jpeg_rgb_round_trip_keeps_shape_and_colour_order() -> None:
    image = np.zeros((32, 48, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    frame = encode_frame(image, camera_id="c", content_type=JPEG, jpeg_quality=95)
    decoded = decode_frame(frame.value, parse_headers(frame.headers), 1 << 20)
    assert decoded.shape == (32, 48, 3)
    assert decoded[..., 0].mean() > 180 and decoded[..., 2].mean() < 20


def headers_without(frame_headers: list[tuple[str, bytes]], name: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in frame_headers if k != name]


def replaced(frame_headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [*headers_without(frame_headers, name), (name, value)]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: headers_without(h, "camera-id"), "missing header 'camera-id'"),
        (lambda h: headers_without(h, "content-type"), "missing header 'content-type'"),
        (lambda h: replaced(h, "content-type", b"image/gif"), "unsupported content-type"),
        (lambda h: replaced(h, "shape", b"64x"), "bad header 'shape'"),
        (lambda h: replaced(h, "capture-ts-ms", b"yesterday"), "bad header 'capture-ts-ms'"),
        (lambda h: replaced(h, "camera-id", b"\xff\xfe"), "not UTF-8"),
        (lambda h: [], "missing header"),
    ],
)
def test_bad_headers_name_the_problem(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    frame = encode_frame(gray(), camera_id="c")
    with pytest.raises(InvalidMessageError, match=reason):
        parse_headers(mutate(frame.headers))


def test_bad_payloads_name_the_problem() -> None:
    frame = encode_frame(gray(), camera_id="c")
    meta = parse_headers(frame.headers)
    with pytest.raises(InvalidMessageError, match="empty value"):
        decode_frame(b"", meta, 1 << 20)
    with pytest.raises(InvalidMessageError, match="exceeds max_frame_bytes"):
        decode_frame(frame.value, meta, 100)
    with pytest.raises(InvalidMessageError, match="corrupt or truncated"):
        decode_frame(frame.value[: len(frame.value) // 3], meta, 1 << 20)
    wrong = parse_headers(replaced(frame.headers, "shape", b"32x32"))
    with pytest.raises(InvalidMessageError, match="does not match header shape"):
        decode_frame(frame.value, wrong, 1 << 20)
    raw = encode_frame(gray(), camera_id="c", content_type=RAW)
    with pytest.raises(InvalidMessageError, match="raw value has"):
        decode_frame(raw.value[:-1], parse_headers(raw.headers), 1 << 20)
