"""Wire format: encode/decode round trips and every way a record can be malformed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hostile import png_bomb
from sqlalchemy import BigInteger

from pipeline.errors import InvalidMessageError
from pipeline.imageheader import PNG_SIGNATURE, jpeg_header
from pipeline.settings import HEADER_HEADROOM_BYTES
from pipeline.storage.tables import Defect
from pipeline.wire import (
    JPEG,
    MAX_HEADER_BYTES,
    MAX_ID_CHARS,
    MAX_SEQ,
    MAX_TRUTH_CHARS,
    PNG,
    RAW,
    FrameLimits,
    decode_frame,
    encode_frame,
    parse_headers,
)

LIMITS = FrameLimits(max_bytes=1 << 20, max_pixels=1 << 22)


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
    assert np.array_equal(decode_frame(frame.value, meta, LIMITS), image)


def test_jpeg_rgb_round_trip_keeps_shape_and_colour_order() -> None:
    image = np.zeros((32, 48, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    frame = encode_frame(image, camera_id="c", content_type=JPEG, jpeg_quality=95)
    decoded = decode_frame(frame.value, parse_headers(frame.headers), LIMITS)
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
        decode_frame(b"", meta, LIMITS)
    with pytest.raises(InvalidMessageError, match="exceeds max_frame_bytes"):
        decode_frame(frame.value, meta, FrameLimits(100, 1 << 22))
    with pytest.raises(InvalidMessageError, match="corrupt or truncated"):
        decode_frame(frame.value[: len(frame.value) // 3], meta, LIMITS)
    wrong = parse_headers(replaced(frame.headers, "shape", b"32x32"))
    with pytest.raises(InvalidMessageError, match=r"image header says 64x80, shape header \(32, 32\)"):
        decode_frame(frame.value, wrong, LIMITS)
    raw = encode_frame(gray(), camera_id="c", content_type=RAW)
    with pytest.raises(InvalidMessageError, match="raw value has"):
        decode_frame(raw.value[:-1], parse_headers(raw.headers), LIMITS)


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb(6000, 5000)  # 30 MP of zeros in about 30 KB
    assert len(bomb) < 100_000
    headers = encode_frame(gray(), camera_id="c", content_type=PNG).headers
    meta = parse_headers(replaced(headers, "shape", b"5000x6000"))
    with pytest.raises(InvalidMessageError, match="exceeds max_frame_pixels"):
        decode_frame(bomb, meta, FrameLimits(1 << 20, 1_000_000))
    # A shape header that lies small does not let it through either: the PNG header is read first.
    with pytest.raises(InvalidMessageError, match="image header says 5000x6000"):
        decode_frame(bomb, parse_headers(headers), LIMITS)
    assert decode_frame(bomb, meta, FrameLimits(1 << 20, 30_000_000)).shape == (5000, 6000)


def test_sixteen_bit_colour_counts_its_decoded_bytes() -> None:
    image16 = np.zeros((100, 100, 3), np.uint16)
    ok, buffer = cv2.imencode(".png", image16)
    assert ok
    meta = parse_headers(replaced(encode_frame(gray(), camera_id="c", content_type=PNG).headers, "shape", b"100x100x3"))
    with pytest.raises(InvalidMessageError, match="would decode to 60000 bytes"):
        decode_frame(buffer.tobytes(), meta, FrameLimits(1 << 20, 15_000))  # 10,000 px, but 16-bit RGB
    assert decode_frame(buffer.tobytes(), meta, FrameLimits(1 << 20, 20_000)).shape == (100, 100, 3)


@pytest.mark.parametrize(
    ("content_type", "payload", "reason"),
    [
        (PNG, cv2.imencode(".tiff", gray())[1].tobytes(), "not a PNG"),
        (PNG, cv2.imencode(".jpg", gray())[1].tobytes(), "not a PNG"),
        (JPEG, cv2.imencode(".png", gray())[1].tobytes(), "not a JPEG"),
        (JPEG, cv2.imencode(".bmp", gray())[1].tobytes(), "not a JPEG"),
        (PNG, PNG_SIGNATURE + b"\0\0\0\x0dIHDR", "truncated or corrupt"),
        (JPEG, b"\xff\xd8\xff\xe0\x00\x10JFIF", "without a start-of-frame"),
    ],
)
def test_the_payload_must_be_the_format_its_content_type_names(content_type: str, payload: bytes, reason: str) -> None:
    meta = parse_headers(encode_frame(gray(), camera_id="c", content_type=content_type).headers)
    with pytest.raises(InvalidMessageError, match=reason):
        decode_frame(payload, meta, LIMITS)


def test_jpeg_header_reads_the_frame_size_past_other_segments() -> None:
    ok, buffer = cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    header = jpeg_header(buffer.tobytes())
    assert (header.height, header.width, header.channels) == (37, 53, 3)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("camera-id", b"c" * 129, "has 129 characters, at most 128"),
        ("line-id", b"L" * 1000, "has 1000 characters"),
        ("ground-truth", b"g" * 65, "at most 64"),
        ("camera-id", b"cam\n7", "control characters"),
        ("camera-id", b" cam", "surrounding spaces"),
        ("seq", str(2**63).encode(), "out of range"),
        ("seq", b"-1", "out of range"),
        ("capture-ts-ms", b"9" * 30, "bad header 'capture-ts-ms'"),
        ("shape", b"70000x10", "bad header 'shape'"),
        ("content-type", b"x" * 5000, r"unsupported content-type 'x{40}\.\.\.'"),
    ],
)
def test_headers_the_database_cannot_hold_are_refused_at_the_boundary(name: str, value: bytes, reason: str) -> None:
    headers = encode_frame(gray(), camera_id="c").headers
    with pytest.raises(InvalidMessageError, match=reason):
        parse_headers(replaced(headers, name, value))


def test_too_many_or_too_large_headers_are_refused() -> None:
    headers = encode_frame(gray(), camera_id="c").headers
    with pytest.raises(InvalidMessageError, match="at most 64 allowed"):
        parse_headers(headers + [(f"x-{i}", b"1") for i in range(100)])
    with pytest.raises(InvalidMessageError, match="headers take 7"):
        parse_headers([*headers, ("x-junk", b"j" * 70_000)])
    assert MAX_HEADER_BYTES == HEADER_HEADROOM_BYTES  # what a record may carry beside its frame


def test_wire_limits_fit_the_database_columns() -> None:
    columns = Defect.__table__.c
    assert columns.camera_id.type.length >= MAX_ID_CHARS
    assert columns.line_id.type.length >= MAX_ID_CHARS
    assert columns.ground_truth.type.length >= MAX_TRUTH_CHARS
    assert isinstance(columns.seq.type, BigInteger) and MAX_SEQ == 2**63 - 1
