"""TIFF directories and EXIF orientation, read by hand (no image library needed).

A phone stores a photo's pixels as the sensor saw them and says in EXIF tag 274 (Orientation)
how to turn them upright. A decoder that ignores the tag (OpenCV's ``IMREAD_UNCHANGED`` does)
hands over a sideways or mirrored picture, in which a face detector finds nothing: the photo
would then leave unprotected. EXIF is a little TIFF file, so one reader serves both.

Orientation values (EXIF 2.3, section 4.6.4), as the transform that makes the stored pixels upright:
1 as stored, 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose (mirror along the
main diagonal), 6 rotate 90 clockwise, 7 transverse (mirror along the other diagonal), 8 rotate
90 counter-clockwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

ORIENTATION_TAG = 274
IMAGE_WIDTH_TAG, IMAGE_LENGTH_TAG, SUBFILE_TYPE_TAG = 256, 257, 254
MAX_DIRECTORIES = 256  # a TIFF whose directory chain is longer (or loops) is refused
# TIFF field types -> (struct code, size); only the integer types that carry sizes and orientation.
_INTEGER_TYPES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


class TiffFormatError(ValueError):
    """A TIFF structure (a TIFF file or an EXIF block) is malformed."""


@dataclass(frozen=True)
class TiffDirectory:
    """The integer tags of one image file directory (IFD) and the offset of the next (0: last)."""

    tags: dict[int, int]
    next_offset: int


@dataclass(frozen=True)
class TiffLayout:
    """Byte order (``<`` or ``>``), classic or BigTIFF, and the offset of the first directory."""

    order: str
    big: bool
    first: int


def tiff_layout(data: bytes) -> TiffLayout:
    """Parse the 8- (classic) or 16-byte (BigTIFF) header of a TIFF structure."""
    if data[:2] not in (b"II", b"MM") or len(data) < 8:
        raise TiffFormatError("not a TIFF structure")
    order = "<" if data[:2] == b"II" else ">"
    version = struct.unpack(order + "H", data[2:4])[0]
    if version == 42:
        return TiffLayout(order, False, struct.unpack(order + "I", data[4:8])[0])
    if version == 43 and len(data) >= 16:
        return TiffLayout(order, True, struct.unpack(order + "Q", data[8:16])[0])
    raise TiffFormatError(f"unknown TIFF version {version}")


def read_directory(data: bytes, layout: TiffLayout, offset: int) -> TiffDirectory:
    """The integer-valued tags (first value only) of the directory at ``offset``."""
    count_code, count_size, entry_size, value_size = ("Q", 8, 20, 8) if layout.big else ("H", 2, 12, 4)
    if offset < 8 or offset + count_size > len(data):
        raise TiffFormatError(f"directory offset {offset} outside the data")
    count = struct.unpack(layout.order + count_code, data[offset:offset + count_size])[0]
    start = offset + count_size
    end = start + count * entry_size
    if end + value_size > len(data):
        raise TiffFormatError("directory runs past the end of the data")
    tags: dict[int, int] = {}
    for entry in range(start, end, entry_size):
        tag, kind = struct.unpack(layout.order + "HH", data[entry:entry + 4])
        if kind in _INTEGER_TYPES:
            code, size = _INTEGER_TYPES[kind]
            value_at = entry + (12 if layout.big else 8)
            tags[tag] = struct.unpack(layout.order + code, data[value_at:value_at + size])[0]
    next_offset = struct.unpack(layout.order + ("Q" if layout.big else "I"), data[end:end + value_size])[0]
    return TiffDirectory(tags, next_offset)


def directories(data: bytes) -> list[TiffDirectory]:
    """Every directory of a TIFF structure, in chain order; a loop or an overlong chain is refused."""
    layout = tiff_layout(data)
    found: list[TiffDirectory] = []
    seen: set[int] = set()
    offset = layout.first
    while offset:
        if offset in seen or len(found) >= MAX_DIRECTORIES:
            raise TiffFormatError("the chain of image directories loops or is too long")
        seen.add(offset)
        found.append(read_directory(data, layout, offset))
        offset = found[-1].next_offset
    if not found:
        raise TiffFormatError("no image directory")
    return found


def exif_orientation(exif: bytes) -> int:
    """The Orientation (1-8) of an EXIF block (a TIFF structure, optionally after ``Exif\\0\\0``);
    1 when absent, out of range or unreadable (the pixels are then taken as stored)."""
    if exif.startswith(b"Exif\0\0"):
        exif = exif[6:]
    try:
        first = read_directory(exif, tiff_layout(exif), tiff_layout(exif).first)
    except (TiffFormatError, struct.error):
        return 1
    value = first.tags.get(ORIENTATION_TAG, 1)
    return value if 1 <= value <= 8 else 1


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` ``(H, W[, C])`` turned upright for an EXIF ``orientation`` (1-8); a new array
    for 2-8 (``(W, H[, C])`` for 5-8), the same array for 1."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image
