"""Image dimensions read from the PNG or JPEG header, before any pixel is decoded.

A 1 MB PNG can declare 25,000 x 25,000 pixels and expand to gigabytes when decoded (a decompression bomb);
OpenCV would also decode any format it recognises (TIFF, WebP, ...), whatever the record's content-type says.
Reading the header first lets the wire format refuse both before a byte is inflated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"

# PNG colour type -> channels OpenCV decodes it to with IMREAD_UNCHANGED (a palette expands to BGR).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers: every SOFn except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, with no length field: TEM, RSTn, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


class ImageHeaderError(ValueError):
    """The bytes do not start like the format the record says it is, or their header is broken."""


@dataclass(frozen=True)
class ImageHeader:
    """What decoding the image would produce: size, channels and bytes per sample."""

    width: int
    height: int
    channels: int
    sample_bytes: int  # 1 for 8-bit images, 2 for 16-bit ones

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        return self.pixels * self.channels * self.sample_bytes


def png_header(data: bytes) -> ImageHeader:
    """Dimensions from the IHDR chunk, which the PNG standard requires to come first."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageHeaderError("payload is not a PNG (no PNG signature)")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageHeaderError("PNG without an IHDR chunk first (truncated or corrupt)")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", data[16:26])
    if colour_type not in _PNG_CHANNELS or bit_depth not in (1, 2, 4, 8, 16):
        raise ImageHeaderError(f"PNG with an invalid IHDR (colour type {colour_type}, bit depth {bit_depth})")
    if width == 0 or height == 0:
        raise ImageHeaderError("PNG declares an empty image")
    return ImageHeader(width, height, _PNG_CHANNELS[colour_type], 2 if bit_depth == 16 else 1)


def jpeg_header(data: bytes) -> ImageHeader:
    """Dimensions from the first start-of-frame segment, walking the marker segments before it."""
    if not data.startswith(JPEG_SIGNATURE):
        raise ImageHeaderError("payload is not a JPEG (no JPEG signature)")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ImageHeaderError("JPEG marker expected (corrupt segment)")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if length < 2:
            raise ImageHeaderError("JPEG segment with an invalid length")
        if marker in _JPEG_SOF:
            segment = data[position + 4 : position + 2 + length]
            if len(segment) < 6:
                break
            precision, height, width, components = struct.unpack(">BHHB", segment[:6])
            if width == 0 or height == 0:
                raise ImageHeaderError("JPEG declares an empty image (or a height set later by DNL)")
            return ImageHeader(width, height, components, 2 if precision > 8 else 1)
        position += 2 + length
    raise ImageHeaderError("JPEG without a start-of-frame segment (truncated or corrupt)")
