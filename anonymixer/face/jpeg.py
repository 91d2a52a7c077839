"""A JPEG's compressed image data without its metadata: how a photo with no face leaves unchanged.

Re-encoding a JPEG changes its pixels (a quality-95 re-encode moved pixels by up to 98 levels and
shrank a 112 KB photo to 74 KB), so a photo in which no face was found is written from its own
bytes: every marker segment that decoding needs is copied as it was (frame and scan headers,
quantisation and Huffman tables, restart interval, the entropy-coded data), and the rest is left
out. The decoded pixels of the output are those of the input, bit for bit.

What is kept and what is removed, segment by segment:
- kept: SOFn, DHT, DQT, DRI, DAC, DNL, DHP, EXP, SOS and its entropy-coded data, RSTn; APP0
  ``JFIF`` (the colour space of a 1- or 3-channel file, and its pixel density); APP14 ``Adobe``
  (the colour transform of a 3- or 4-channel file: without it a decoder may read the wrong colours);
- removed: every other APPn (EXIF with its thumbnail, XMP, ICC profiles, MPF and maker data,
  Photoshop IRB, JFXX thumbnails), COM comments, and anything after the end-of-image marker
  (the second pictures of MPF files, trailers of phone makers);
- the EXIF orientation, when the photo was read with one other than 1 (stored sideways or
  mirrored), is written back as a minimal EXIF segment holding that one tag and nothing else.
  Without it a viewer would show the stored pixels sideways; with it, the photo looks as it was
  searched for faces. A lossless rotation of the compressed data instead is only possible when
  the size is a multiple of the block size, so it is not done.

The ICC profile is removed like the rest of the metadata, as it is from every protected output
(our encoder writes none): the pixel values are the file's own, and a colour-managed viewer
shows them as sRGB, so a wide-gamut photo can look a little less saturated.
"""

from __future__ import annotations

import struct

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})   # TEM, RST0-7: no length field
_KEPT_APPS = {0xE0: b"JFIF\x00", 0xEE: b"Adobe"}       # the APPn segments decoding may need
ORIENTATION_TAG = 0x0112


class JpegStructureError(ValueError):
    """The marker structure of a JPEG cannot be walked (truncated, or not JPEG)."""


def strip_metadata(data: bytes, orientation: int = 1) -> bytes:
    """``data`` (a whole JPEG file) with its metadata segments removed and its compressed image
    data unchanged; ``orientation`` (1-8) other than 1 is written back as the only EXIF tag.

    Raises ``JpegStructureError`` when the markers cannot be walked to the end-of-image marker.
    """
    if not 1 <= orientation <= 8:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")
    if data[:2] != b"\xff\xd8":
        raise JpegStructureError("no start-of-image marker")
    kept = [data[:2]]
    position = 2
    while True:
        marker, start, position = _next_marker(data, position)
        if marker == EOI:
            kept.append(b"\xff\xd9")
            break
        if marker in _STANDALONE:
            kept.append(data[start:position])
            continue
        if position + 2 > len(data):
            raise JpegStructureError(f"segment FF{marker:02X} at byte {start} is cut off")
        length = struct.unpack(">H", data[position:position + 2])[0]
        end = position + length
        if length < 2 or end > len(data):
            raise JpegStructureError(f"segment FF{marker:02X} at byte {start} is cut off")
        if _is_metadata(marker, data[position + 2:end]):
            position = end
            continue
        if marker == SOS:
            end = _end_of_scan(data, end)
        kept.append(data[start:end])
        position = end
    if orientation != 1:
        jfif_first = len(kept) > 1 and _is_app(kept[1], 0xE0)   # JFIF wants its APP0 right after SOI
        kept.insert(2 if jfif_first else 1, orientation_segment(orientation))
    return b"".join(kept)


def orientation_segment(orientation: int) -> bytes:
    """An APP1 EXIF segment whose only tag is Orientation (274) = ``orientation``: a big-endian
    TIFF header and one directory of one SHORT entry."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) \
        + struct.pack(">HHIHH", ORIENTATION_TAG, 3, 1, orientation, 0) + struct.pack(">I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def _next_marker(data: bytes, position: int) -> tuple[int, int, int]:
    """``(marker, its first byte, the byte after it)`` for the marker at ``position`` (fill bytes
    ``FF`` before it are allowed)."""
    if position >= len(data) or data[position] != 0xFF:
        raise JpegStructureError(f"expected a marker at byte {position}")
    start = position
    while position < len(data) and data[position] == 0xFF:
        position += 1
    if position >= len(data):
        raise JpegStructureError("no end-of-image marker")
    return data[position], start, position + 1


def _end_of_scan(data: bytes, position: int) -> int:
    """The first byte after the entropy-coded data that starts at ``position``: the next marker
    other than a stuffed ``FF 00`` or a restart marker inside the scan."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            raise JpegStructureError("no end-of-image marker after the image data")
        following = data[position + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            position += 1 if following == 0xFF else 2
            continue
        return position


def _is_metadata(marker: int, payload: bytes) -> bool:
    if marker == 0xFE:   # COM
        return True
    if 0xE0 <= marker <= 0xEF:
        signature = _KEPT_APPS.get(marker)
        return signature is None or not payload.startswith(signature)
    return False


def _is_app(segment: bytes, marker: int) -> bool:
    return len(segment) > 1 and segment[0] == 0xFF and segment[1] == marker
