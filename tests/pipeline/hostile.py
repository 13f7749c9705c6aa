"""Hostile records: every header and payload kind a broken or malicious producer can send, each with the reason
the consumer must give when it dead-letters it; and good frames to mix in."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from pipeline.imageheader import PNG_SIGNATURE
from pipeline.wire import JPEG, PNG, RAW, EncodedFrame, Headers, encode_frame


@dataclass(frozen=True)
class Hostile:
    kind: str
    value: bytes
    headers: Headers
    reason: str  # a substring the DLQ reason must contain


def png_bomb(width: int, height: int) -> bytes:
    """A valid gray PNG of zeros: about a thousandth of `width x height` bytes compressed, all of it decoded."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@cache
def big_bomb() -> bytes:
    return png_bomb(25_000, 25_000)  # 625 MB decoded, about 0.6 MB on the wire


def good_frame(rng: np.random.Generator, seq: int) -> EncodedFrame:
    image = rng.integers(60, 90, size=(96, 128), dtype=np.uint8)
    content_type = (JPEG, PNG, RAW)[seq % 3]
    return encode_frame(image, camera_id=f"cam-{seq % 4}", seq=seq, content_type=content_type)


def _set(headers: Headers, name: str, value: bytes) -> Headers:
    return [*(h for h in headers if h[0] != name), (name, value)]


def _drop(headers: Headers, name: str) -> Headers:
    return [h for h in headers if h[0] != name]


def hostile_kinds(max_frame_bytes: int) -> list[Callable[[EncodedFrame], Hostile]]:
    """One maker per kind of bad record, each turning a good frame into a bad one."""
    tiff = cv2.imencode(".tiff", np.zeros((96, 128), np.uint8))[1].tobytes()
    bmp = cv2.imencode(".bmp", np.zeros((96, 128), np.uint8))[1].tobytes()
    png16 = cv2.imencode(".png", np.zeros((2000, 2000, 3), np.uint16))[1].tobytes()

    def header(name: str, value: bytes, reason: str) -> Callable[[EncodedFrame], Hostile]:
        return lambda f: Hostile(f"header {name}={value[:12]!r}", f.value, _set(f.headers, name, value), reason)

    def payload(
        kind: str, value: bytes, content_type: str, shape: bytes, reason: str
    ) -> Callable[[EncodedFrame], Hostile]:
        def make(f: EncodedFrame) -> Hostile:
            headers = _set(
                _set(_set(f.headers, "content-type", content_type.encode()), "shape", shape), "dtype", b"uint8"
            )
            return Hostile(kind, value, headers, reason)

        return make

    return [
        header("camera-id", b"c" * 1000, "has 1000 characters"),
        header("line-id", b"L" * 129, "has 129 characters"),
        header("ground-truth", b"g" * 500, "has 500 characters"),
        header("camera-id", b"cam\x00\x1b[2J", "control characters"),
        header("camera-id", b"\xff\xfe\xfd", "not UTF-8"),
        header("seq", str(2**63).encode(), "out of range"),
        header("seq", b"-5", "out of range"),
        header("seq", b"NaN", "bad header 'seq'"),
        header("capture-ts-ms", b"inf", "bad header 'capture-ts-ms'"),
        header("capture-ts-ms", b"9" * 40, "bad header 'capture-ts-ms'"),
        header("shape", b"nanx12", "bad header 'shape'"),
        header("shape", b"100000x100000", "bad header 'shape'"),
        header("shape", b"96x128x4", "bad header 'shape'"),
        header("dtype", b"float32", "unsupported dtype"),
        header("content-type", b"image/tiff", "unsupported content-type"),
        header("content-type", b"x" * 20_000, "unsupported content-type"),
        header("lg-version", b"99", "unsupported wire version"),
        lambda f: Hostile("missing camera-id", f.value, _drop(f.headers, "camera-id"), "missing header 'camera-id'"),
        lambda f: Hostile("no headers", f.value, [], "missing header"),
        lambda f: Hostile("100 headers", f.value, f.headers + [(f"x-{i}", b"1") for i in range(100)], "at most 64"),
        lambda f: Hostile("huge header", f.value, [*f.headers, ("x-junk", b"j" * 300_000)], "headers take"),
        lambda f: Hostile("empty value", b"", f.headers, "empty value"),
        lambda f: Hostile("oversized value", b"\0" * (max_frame_bytes + 1), f.headers, "exceeds max_frame_bytes"),
        payload("PNG bomb", big_bomb(), PNG, b"25000x25000", "exceeds max_frame_pixels"),
        payload("PNG bomb, small shape", big_bomb(), PNG, b"96x128", "image header says 25000x25000"),
        payload("16-bit PNG", png16, PNG, b"2000x2000x3", "would decode to"),
        payload("TIFF as PNG", tiff, PNG, b"96x128", "not a PNG"),
        payload("BMP as JPEG", bmp, JPEG, b"96x128", "not a JPEG"),
        payload("random as PNG", np.random.default_rng(0).bytes(5000), PNG, b"96x128", "not a PNG"),
        payload("PNG cut after IHDR", big_bomb()[:40], PNG, b"25000x25000", "exceeds max_frame_pixels"),
        payload("JPEG cut before SOF", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01", JPEG, b"96x128", "start-of-frame"),
        payload("raw NaN floats", np.full((96, 128), np.nan, np.float32).tobytes(), RAW, b"96x128", "raw value has"),
        payload("raw short", b"\x01" * 100, RAW, b"96x128", "raw value has"),
    ]


def truncated_png(f: EncodedFrame) -> Hostile:
    """A real PNG of the right size cut in half: the header passes, the decoder refuses the rest."""
    image = np.full((96, 128), 77, np.uint8)
    data = cv2.imencode(".png", image)[1].tobytes()
    headers = _set(_set(f.headers, "content-type", PNG.encode()), "shape", b"96x128")
    return Hostile("truncated PNG", data[: len(data) // 2], _set(headers, "dtype", b"uint8"), "corrupt or truncated")


def mixed_records(
    count: int, good_share: float, max_frame_bytes: int, seed: int = 0
) -> Iterator[Hostile | EncodedFrame]:
    """`count` records: good frames and every hostile kind in turn, in a seeded random order."""
    rng = np.random.default_rng(seed)
    kinds = [*hostile_kinds(max_frame_bytes), truncated_png]
    bad = 0
    for seq in range(count):
        frame = good_frame(rng, seq)
        if rng.random() < good_share:
            yield frame
        else:
            yield kinds[bad % len(kinds)](frame)
            bad += 1
