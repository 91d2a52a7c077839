"""What an image file is, read from its header by Pillow before any decoding: format, size, frames,
orientation, and how many bytes its pixels take once decoded.

Decoding first and asking questions later is how a 100 000 x 100 000 TIFF takes gigabytes, how an
animated GIF silently loses all but its first frame, and how a phone photo stored sideways is
protected sideways (no face found, written unchanged). Pillow parses the header (``Image.open``
reads no pixel data); this module only decides what its answers mean for us:
- ``format``: png, jpeg, webp, tiff, gif or bmp (the magic bytes decide, not the suffix; a JPEG
  with a multi-picture extension, Pillow's "MPO", is a JPEG: decoders show its first picture);
  other formats are not decoded at all (``None``);
- ``width`` x ``height`` in pixels as stored;
- ``frames``: 1, or 2 meaning "more than one" (animated PNG/WebP/GIF, multi-page TIFF; a TIFF's
  reduced-resolution copies, NewSubfileType bit 0, are thumbnails, not pages);
- ``orientation``: the one viewers apply, as Pillow's ``getexif`` reads it: the FIRST EXIF block
  (Pillow appends later APP1 segments after it, where no directory points), any integer type
  (a signed short is as good as a short), and XMP ``tiff:Orientation`` when EXIF has none. A PNG's
  ``eXIf`` chunk counts only before the image data (where browsers read it; Pillow's PNG
  ``getexif`` would decode the whole image to look further). Values outside 1-8 mean 1.
- ``decoded_bytes``: the size of the pixel array a decoder returns (``IMREAD_UNCHANGED``: every
  channel, 16-bit and float samples at their own width), for the memory limits in ``face.io``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

FORMATS = ("png", "jpeg", "webp", "tiff", "gif", "bmp")
_PILLOW_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "TIFF": "tiff", "GIF": "gif",
                   "BMP": "bmp"}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ORIENTATION_TAG = 274
SUBFILE_TYPE_TAG = 254
MAX_DIRECTORIES = 256  # TIFF pages looked at; past that the file is "more than one page" anyway


class HeaderError(ValueError):
    """The header of a known image format is malformed (the message says how)."""


class HeaderTooLarge(HeaderError):
    """The header announces more pixels than the header reader agrees to describe."""


@dataclass(frozen=True)
class ImageHeader:
    """``format`` (one of ``FORMATS``), stored ``width`` x ``height`` in pixels, ``frames``
    (1, or 2 for "more than one"), EXIF ``orientation`` (1-8, 1 when absent), ``decoded_bytes``
    (bytes of the decoded pixel array; 0 when unknown)."""

    format: str
    width: int
    height: int
    frames: int = 1
    orientation: int = 1
    decoded_bytes: int = 0

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

    Raises ``HeaderError`` for a known format whose header is cut short or malformed, and its
    subclass ``HeaderTooLarge`` for one that announces more pixels than Pillow's own bomb limit.
    """
    kind = image_format(data)
    if kind is None:
        return None
    pillow_name = kind.upper()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bomb warnings (our own limits decide), a malformed MPO index
        try:
            with Image.open(io.BytesIO(data), formats=[pillow_name]) as image:
                if _PILLOW_FORMATS.get(image.format or "") != kind:
                    raise HeaderError(f"Pillow reads it as {image.format}")
                orientation = exif_orientation(image)
                return ImageHeader(kind, image.width, image.height, _frames(image), orientation,
                                   _decoded_bytes(image))
        except Image.DecompressionBombError as exc:
            raise HeaderTooLarge(str(exc).split(",")[0]) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, IndexError, KeyError,
                TypeError, EOFError) as exc:
            if isinstance(exc, HeaderError):
                raise
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise HeaderError(f"malformed {pillow_name} header ({reason})") from None


def exif_orientation(image: Image.Image) -> int:
    """The orientation (1-8) Pillow reads for an open image; 1 when absent or out of range.

    Calls the base ``Image.getexif``: it reads what the header gave (EXIF, then XMP), where the
    PNG plugin's override would first decode every pixel to look for a late ``eXIf`` chunk.
    """
    value = Image.Image.getexif(image).get(ORIENTATION_TAG, 1)
    if isinstance(value, tuple):  # a count above 1: viewers take the first value
        value = value[0] if value else 1
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 1
    return number if 1 <= number <= 8 else 1


def _frames(image: ImageFile.ImageFile) -> int:
    if image.format != "TIFF":
        # An MPO's further pictures (depth maps, previews) are not frames: decoders show the first.
        return 2 if image.format != "MPO" and getattr(image, "is_animated", False) else 1
    pages = 0
    for index in range(MAX_DIRECTORIES):
        try:
            image.seek(index)
        except EOFError:
            break
        if not int(image.tag_v2.get(SUBFILE_TYPE_TAG, 0)) & 1:  # type: ignore[attr-defined]
            pages += 1
        if pages > 1:
            break
    image.seek(0)
    return min(max(pages, 1), 2)


def _decoded_bytes(image: ImageFile.ImageFile) -> int:
    """Bytes of the array ``cv2.imdecode(..., IMREAD_UNCHANGED)`` returns for this image (an upper
    bound: a palette becomes BGRA at most, 16-bit samples stay 16-bit, 32-bit ones 4 bytes)."""
    mode = image.mode
    raw = " ".join(str(tile[3]) for tile in image.tile[:1])  # the raw mode, e.g. "RGBA;16B"
    bands = 4 if mode in ("P", "PA") else len(image.getbands())
    if mode in ("I", "F") or "32" in raw:
        sample = 4
    elif "16" in mode or "16" in raw:
        sample = 2
    else:
        sample = 1
    return image.width * image.height * bands * sample
