"""Image decoding and preprocessing shared by training and the line: one code path, so the model
sees the same pixels in both places (mismatched resizing is the top cause of anomaly-model bugs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from pipeline.errors import ImageDecodeError

# file types read_image accepts; training folders and the simulator's image source use the same list
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

ResizeMode = Literal["stretch", "letterbox"]
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox")


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: square size, channel count (1 gray, 3 RGB) and resize mode."""

    size: int
    channels: int
    resize_mode: ResizeMode = "stretch"

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"size must be >= 16, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")


def decode_image(data: bytes, source: str = "") -> np.ndarray:
    """Decode PNG/JPEG/BMP bytes into uint8 HxW (gray) or HxWx3 (RGB)."""
    if not data:
        raise ImageDecodeError("empty image payload", source)
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageDecodeError("not a decodable image (corrupt or truncated)", source)
    return _to_gray_or_rgb(image, source)


def read_image(path: Path) -> np.ndarray:
    """Read an image file into uint8 HxW (gray) or HxWx3 (RGB)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file: {exc.strerror}", str(path)) from exc
    return decode_image(data, str(path))


def _to_gray_or_rgb(image: np.ndarray, source: str) -> np.ndarray:
    if image.dtype == np.uint16:
        # 16-bit industrial cameras: keep the top byte, the model works on 8-bit contrast.
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ImageDecodeError(f"unsupported pixel type {image.dtype}", source)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageDecodeError(f"unsupported image shape {image.shape}", source)


def is_color(image: np.ndarray) -> bool:
    """True for a 3-channel image whose channels differ (a gray image saved as RGB is not color)."""
    if image.ndim == 2:
        return False
    return not (np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Bring a gray or RGB uint8 image to the model's channel count."""
    if channels == 1:
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)


@dataclass(frozen=True)
class Placement:
    """Where a frame lands in the size x size model input: its scaled size, the padding before it (letterbox)
    and how many frame pixels one input pixel spans; `resize` and the verdict's boxes share it."""

    width: int
    height: int
    left: int
    top: int
    frame_per_input_x: float
    frame_per_input_y: float


def placement(frame_hw: tuple[int, ...], size: int, mode: ResizeMode) -> Placement:
    """'stretch' scales each axis to `size`; 'letterbox' keeps the aspect ratio and centres the frame."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    if mode == "stretch":
        return Placement(size, size, 0, 0, width / size, height / size)
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    return Placement(new_w, new_h, (size - new_w) // 2, (size - new_h) // 2, 1.0 / scale, 1.0 / scale)


def resize(image: np.ndarray, size: int, mode: ResizeMode, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize to size x size: 'stretch' ignores aspect ratio, 'letterbox' keeps it and pads with zeros."""
    if mode == "stretch":
        return cv2.resize(image, (size, size), interpolation=interpolation)
    place = placement(image.shape, size, mode)
    scaled = cv2.resize(image, (place.width, place.height), interpolation=interpolation)
    canvas = np.zeros((size, size, *image.shape[2:]), dtype=image.dtype)
    canvas[place.top : place.top + place.height, place.left : place.left + place.width] = scaled
    return canvas


def preprocess(image: np.ndarray, spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 image -> float32 CxHxW in [0, 1] at the model size. The model graph does no other scaling.

    `out` (C x H x W float32, e.g. one slot of a batch buffer) receives the result: the scaling writes straight into
    it, so a frame already at the model size (raw frames, most often) costs one pass over its pixels.
    """
    converted = convert_channels(image, spec.channels)
    same_size = converted.shape[:2] == (spec.size, spec.size)  # resizing to its own size is a copy
    resized = converted if same_size else resize(converted, spec.size, spec.resize_mode)
    if out is None:
        out = np.empty((spec.channels, spec.size, spec.size), dtype=np.float32)
    channels_first = resized[None, :, :] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    np.multiply(channels_first, np.float32(1.0 / 255.0), out=out)
    return out


def preprocess_mask(mask: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Ground-truth mask -> bool HxW at the model size, resized the same way as the image."""
    gray = convert_channels(mask, 1)
    resized = resize(gray, spec.size, spec.resize_mode, interpolation=cv2.INTER_NEAREST)
    return resized > 127


def preprocess_batch(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack preprocessed images into one float32 NxCxHxW batch."""
    batch = np.empty((len(images), spec.channels, spec.size, spec.size), dtype=np.float32)
    for index, image in enumerate(images):
        preprocess(image, spec, out=batch[index])
    return batch
