"""Reading and writing images with one-line errors that name the file.

``read_image`` returns an image as stored (gray, BGR or BGRA); ``read_photo`` is what the face
pipeline reads: always ``(H, W, 3) BGR``, with a way back to the file's own channel layout, so that
grayscale and RGBA photos are converted rather than refused.

Checks made before and after decoding, because a decoder alone hides some problems:
- size from the PNG/JPEG header first, so a huge image is refused before it is decoded;
- a JPEG without an end-of-image marker (``FF D9``) after its last scan, or a PNG without its
  ``IEND`` chunk, is *truncated*: OpenCV decodes what it has and fills the rest with gray, so the
  picture looks valid but is not the photo that was taken.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputImageError

MAX_PIXELS = 100_000_000  # larger images are refused rather than exhausting memory
MIN_FACE_IMAGE_SIDE = 16  # pixels: a smaller photo cannot hold a face the detector can find

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header without decoding; ``None`` for other formats."""
    head = bytes(data[:65536])
    if head.startswith(_PNG_MAGIC) and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            length = struct.unpack(">H", head[i + 2:i + 4])[0]
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", head[i + 5:i + 9])
                return int(width), int(height)
            i += 2 + length
    return None


def truncation(data: np.ndarray) -> str | None:
    """Why an encoded PNG/JPEG is truncated (missing end marker), or ``None`` if it looks complete."""
    raw = data.tobytes()
    if raw.startswith(b"\xff\xd8"):
        last_scan = raw.rfind(b"\xff\xda")  # inside scans, 0xFF is byte-stuffed: FF DA is a real marker
        if last_scan < 0 or raw.find(b"\xff\xd9", last_scan) < 0:
            return "truncated JPEG (no end-of-image marker FF D9 after the image data)"
    elif raw.startswith(_PNG_MAGIC) and raw.rfind(b"IEND") < 0:
        return "truncated PNG (no IEND chunk)"
    return None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as stored: ``(H, W)`` gray, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA, uint8.

    Raises ``InputImageError`` naming the file for a missing, empty, unreadable, undecodable,
    truncated or too large file.
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: no such file")
    if path.is_dir():
        raise InputImageError(f"{path}: is a folder, not an image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise InputImageError(f"{path}: empty file (0 bytes)")
    size = header_size(data)
    if size is not None:
        _check_pixels(path, *size)
    problem = truncation(data)
    if problem:
        raise InputImageError(f"{path}: {problem}; the file is incomplete, copy it again")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputImageError(f"{path}: not a readable image (corrupt, truncated or not an image format)")
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF: keep the high byte
        image = (image // 256).astype(np.uint8)
    elif image.dtype != np.uint8:  # float TIFF/EXR in [0, 1]
        image = np.clip(image.astype(np.float32) * 255.0, 0, 255).astype(np.uint8)
    _check_pixels(path, image.shape[1], image.shape[0])
    return image


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise InputImageError(f"{path}: image of {width}x{height} pixels is too large "
                              f"(limit {MAX_PIXELS // 1_000_000} megapixels)")


def read_photo(path: str | os.PathLike[str]) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A whole photo as ``(H, W, 3) uint8 BGR``, and a function that turns a processed copy back
    into the file's own layout (gray stays gray; an alpha channel is put back unchanged).

    Raises ``InputImageError`` as ``read_image`` does, and for a photo smaller than
    ``MIN_FACE_IMAGE_SIDE`` pixels on a side ("too small to contain a face").
    """
    image = read_image(path)
    height, width = image.shape[:2]
    if min(height, width) < MIN_FACE_IMAGE_SIDE:
        raise InputImageError(f"{path}: image of {width}x{height} pixels is too small to contain a face "
                              f"(need at least {MIN_FACE_IMAGE_SIDE}x{MIN_FACE_IMAGE_SIDE})")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:]
        return (np.ascontiguousarray(image[:, :, :3]),
                lambda bgr: np.concatenate([bgr, alpha], axis=2))
    return image, lambda bgr: bgr


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a BGR uint8 image; the format follows the file's suffix. Creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise InputImageError(f"{path}: cannot encode an image with this suffix")
    encoded.tofile(path)
