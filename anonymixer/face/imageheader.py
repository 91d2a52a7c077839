"""What an image file is, read from its header before any decoding: format, size, frames, orientation.

Decoding first and asking questions later is how a 100 000 x 100 000 TIFF takes gigabytes, how an
animated GIF silently loses all but its first frame, and how a phone photo stored sideways is
protected sideways (no face found, written unchanged). So ``read_header`` answers, from the bytes:
- ``format``: png, jpeg, webp, tiff, gif or bmp (by magic bytes, not by suffix); other formats
  are not decoded at all (``None``);
- ``width`` x ``height`` in pixels as stored;
- ``frames``: 1, or 2 meaning "more than one" (animated PNG/WebP/GIF, multi-page TIFF);
- ``orientation``: the EXIF Orientation (1-8) of JPEG (APP1), PNG (eXIf), WebP (EXIF) and TIFF.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .exif import (IMAGE_LENGTH_TAG, IMAGE_WIDTH_TAG, ORIENTATION_TAG, SUBFILE_TYPE_TAG, TiffFormatError,
                   directories, exif_orientation)

FORMATS = ("png", "jpeg", "webp", "tiff", "gif", "bmp")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_SOS = 0xDA


class HeaderError(ValueError):
    """The header of a known image format is malformed (the message says how)."""


@dataclass(frozen=True)
class ImageHeader:
    """``format`` (one of ``FORMATS``), stored ``width`` x ``height`` in pixels, ``frames``
    (1, or 2 for "more than one"), EXIF ``orientation`` (1-8, 1 when absent)."""

    format: str
    width: int
    height: int
    frames: int = 1
    orientation: int = 1

    @property
    def frame_word(self) -> str:
        return "pages" if self.format == "tiff" else "frames"


def image_format(data: bytes) -> str | None:
    """The format of encoded image bytes by their magic number, or ``None``."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    return None


def read_header(data: bytes) -> ImageHeader | None:
    """The header of encoded image bytes; ``None`` for a format not in ``FORMATS``.

    Raises ``HeaderError`` for a known format whose header is cut short or malformed.
    """
    kind = image_format(data)
    if kind is None:
        return None
    try:
        return _READERS[kind](data)
    except (struct.error, IndexError, TiffFormatError) as exc:
        raise HeaderError(f"malformed {kind.upper()} header ({exc})") from None


def _png(data: bytes) -> ImageHeader:
    if data[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    frames, orientation = 1, 1
    at = 8
    while at + 8 <= len(data):
        length, tag = struct.unpack(">I4s", data[at:at + 8])
        if tag == b"acTL":  # animated PNG: num_frames
            frames = min(struct.unpack(">I", data[at + 8:at + 12])[0], 2) or 1
        elif tag == b"eXIf":
            orientation = exif_orientation(data[at + 8:at + 8 + length])
        elif tag == b"IEND":
            break
        at += 12 + length
    return ImageHeader("png", width, height, frames, orientation)


def _jpeg(data: bytes) -> ImageHeader:
    at, size, orientation = 2, None, 1
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise HeaderError(f"JPEG marker expected at byte {at}")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        segment = data[at + 4:at + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\0\0") and orientation == 1:
            orientation = exif_orientation(segment)
        elif marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", segment[1:5])
            size = (width, height)
        if marker == _JPEG_SOS:
            break
        at += 2 + length
    if size is None:
        raise HeaderError("JPEG without a frame header (SOF)")
    return ImageHeader("jpeg", size[0], size[1], 1, orientation)


def _webp(data: bytes) -> ImageHeader:
    size, frames, orientation = None, 0, 1
    at = 12
    while at + 8 <= len(data):
        tag, length = struct.unpack("<4sI", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if tag == b"VP8X":  # extended: canvas size, 24 bits each, minus one
            size = (int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1)
        elif tag == b"VP8 " and size is None:  # lossy: after a 3-byte frame tag and start code 9D 01 2A
            width, height = struct.unpack("<HH", body[6:10])
            size = (width & 0x3FFF, height & 0x3FFF)
        elif tag == b"VP8L" and size is None:  # lossless: signature 2F, then 14 bits each, minus one
            bits = int.from_bytes(body[1:5], "little")
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif tag == b"ANMF":
            frames += 1
        elif tag == b"EXIF":
            orientation = exif_orientation(body)
        at += 8 + length + (length & 1)  # chunks are padded to an even length
    if size is None:
        raise HeaderError("WebP without an image chunk")
    return ImageHeader("webp", size[0], size[1], min(max(frames, 1), 2), orientation)


def _tiff(data: bytes) -> ImageHeader:
    found = directories(data)
    first = found[0]
    if IMAGE_WIDTH_TAG not in first.tags or IMAGE_LENGTH_TAG not in first.tags:
        raise HeaderError("TIFF directory without ImageWidth/ImageLength")
    # Reduced-resolution copies (thumbnails: NewSubfileType bit 0) are not pages.
    pages = sum(1 for d in found if not d.tags.get(SUBFILE_TYPE_TAG, 0) & 1)
    orientation = first.tags.get(ORIENTATION_TAG, 1)
    return ImageHeader("tiff", first.tags[IMAGE_WIDTH_TAG], first.tags[IMAGE_LENGTH_TAG], min(max(pages, 1), 2),
                       orientation if 1 <= orientation <= 8 else 1)


def _gif(data: bytes) -> ImageHeader:
    width, height, flags = struct.unpack("<HHB", data[6:11])
    at = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)  # after the global colour table
    images = 0
    while at < len(data) and images < 2:
        block = data[at]
        if block == 0x3B:  # trailer
            break
        if block == 0x2C:  # image descriptor; then an optional local colour table and the LZW byte
            images += 1
            local = data[at + 9]
            at += 10 + ((3 << ((local & 7) + 1)) if local & 0x80 else 0) + 1
        elif block == 0x21:  # extension: label byte, then data sub-blocks
            at += 2
        else:
            raise HeaderError(f"unknown GIF block 0x{block:02x} at byte {at}")
        if block in (0x2C, 0x21):
            at = _skip_sub_blocks(data, at)
    return ImageHeader("gif", width, height, max(min(images, 2), 1), 1)


def _skip_sub_blocks(data: bytes, at: int) -> int:
    while at < len(data) and data[at]:
        at += 1 + data[at]
    return at + 1


def _bmp(data: bytes) -> ImageHeader:
    info_size = struct.unpack("<I", data[14:18])[0]
    if info_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<hh", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("bmp", abs(width), abs(height))  # a negative height means top-down rows


_READERS = {"png": _png, "jpeg": _jpeg, "webp": _webp, "tiff": _tiff, "gif": _gif, "bmp": _bmp}
