"""Reading and writing images with one-line errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputImageError

# Decoders print their own warnings for broken files; we report those files ourselves, once.
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
except AttributeError:  # older OpenCV builds without the logging module
    pass

MAX_PIXELS = 100_000_000  # larger images are refused rather than exhausting memory


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as stored: ``(H, W)`` gray, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA, uint8.

    Raises ``InputImageError`` naming the file for a missing, empty, unreadable or undecodable file.
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
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputImageError(f"{path}: not a readable image (corrupt, truncated or not an image format)")
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF: keep the high byte
        image = (image // 256).astype(np.uint8)
    elif image.dtype != np.uint8:  # float TIFF/EXR in [0, 1]
        image = np.clip(image.astype(np.float32) * 255.0, 0, 255).astype(np.uint8)
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise InputImageError(f"{path}: image of {image.shape[1]}x{image.shape[0]} pixels is too large "
                              f"(limit {MAX_PIXELS // 1_000_000} megapixels)")
    return image


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a BGR uint8 image; the format follows the file's suffix. Creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise InputImageError(f"{path}: cannot encode an image with this suffix")
    encoded.tofile(path)
