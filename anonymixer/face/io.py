"""Reading and writing images with one-line errors that name the file.

``read_image`` returns an image upright, in its stored channel layout (gray, BGR or BGRA), 8 bits;
``read_photo`` is what the face pipeline reads: always ``(H, W, 3) uint8 BGR``, with a way back to
the file's own layout and depth (gray stays gray, alpha is kept, 16-bit stays 16-bit).

Checks made before and after decoding, because a decoder alone hides some problems
(``imageheader`` reads the header):
- the format is known (PNG, JPEG, WebP, TIFF, GIF, BMP) and its header says the size, so a huge
  image is refused before it is decoded (bounded memory);
- a file of more than one frame (animated GIF/PNG/WebP, multi-page TIFF) is refused by name:
  decoding it would keep the first frame and silently drop the rest;
- EXIF orientation is applied (``exif.upright``): a phone photo stored sideways is protected
  upright and written upright, without the tag (no metadata of the input is copied to the output);
- a JPEG without an end-of-image marker (``FF D9``) after its last scan, or a PNG without its
  ``IEND`` chunk, is *truncated*: OpenCV decodes what it has and fills the rest with gray, so the
  picture looks valid but is not the photo that was taken;
- a JPEG whose decoder warns that its data is damaged (libjpeg-turbo through ``simplejpeg`` in
  strict mode, at 1/8 scale: every scan is still entropy-decoded) is refused too: a truncated file
  with an end marker appended decodes "successfully", its missing part a flat gray.

``write_image`` writes atomically (``anonymixer.atomic``): a temporary file, then a rename.

A photo in which no face is found is written with its pixels as they were (``Restore.unchanged``):
a JPEG as its own compressed data with the metadata segments removed (no re-encoding; see
``anonymixer.face.jpeg`` for what is kept, and for the EXIF orientation), a GIF with its own palette
and indices; every other format is lossless already (PNG, WebP lossless, TIFF, BMP), and keeps the
file's depth, gray and alpha. A photo whose suffix names another format than its content
(a PNG named ``.jpg``) is encoded as its suffix says, as any output is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from ..atomic import describe_os_error, write_bytes
from ..errors import InputImageError, OutputError
from .exif import upright
from .imageheader import FORMATS, HeaderError, HeaderTooLarge, ImageHeader, read_header
from .jpeg import JpegStructureError, strip_metadata

# Files searched for in folders (photos, calibration and evaluation data); the content decides the format.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
MAX_PIXELS = 100_000_000  # larger images are refused rather than exhausting memory
# Output suffixes whose encoder changes pixels: a photo left unchanged is written from its own bytes there.
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
LOSSY_SUFFIXES = JPEG_SUFFIXES | {".gif"}
# Decoded pixel arrays larger than this are refused too (a 100 MP 8-bit RGBA photo is 400 MB; a
# 16-bit RGBA one is 800 MB and refused): processing a photo holds about four such arrays.
MAX_DECODED_BYTES = 512 * 2**20
MIN_FACE_IMAGE_SIDE = 16  # pixels: a smaller photo cannot hold a face the detector can find
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def truncation(data: bytes) -> str | None:
    """Why an encoded PNG/JPEG is truncated (missing end marker), or ``None`` if it looks complete."""
    if data.startswith(b"\xff\xd8"):
        last_scan = data.rfind(b"\xff\xda")  # inside scans, 0xFF is byte-stuffed: FF DA is a real marker
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            return "truncated JPEG (no end-of-image marker FF D9 after the image data)"
    elif data.startswith(_PNG_MAGIC) and data.rfind(b"IEND") < 0:
        return "truncated PNG (no IEND chunk)"
    return None


def jpeg_damage(data: bytes) -> str | None:
    """The warning libjpeg-turbo gives when it decodes damaged JPEG data (premature end of a data
    segment, extraneous bytes, a lost restart marker...), or ``None``. An error that is not a
    warning (a colour conversion this check cannot do, e.g. CMYK) is left to the real decoder."""
    fast = {"colorspace": "GRAY", "min_width": 1, "min_height": 1, "fastdct": True, "fastupsample": True}
    try:
        simplejpeg.decode_jpeg(data, strict=True, **fast)
        return None
    except ValueError as exc:
        warning = str(exc).strip()
    try:
        simplejpeg.decode_jpeg(data, strict=False, **fast)
    except ValueError:
        return None  # an error even when warnings are allowed: not damage we can name
    return f"damaged JPEG (the decoder warns: {warning})"


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file (missing, a folder, a broken or looping
    symbolic link, not a regular file, empty), or ``None``."""
    if path.is_symlink() and not path.exists():
        try:
            path.stat()
        except OSError as exc:  # ELOOP: a symlink loop; ENOENT: a dangling link
            return f"broken symbolic link ({describe_os_error(exc)})"
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder, not a file"
    if not path.is_file():
        return "not a regular file (a device, pipe or socket)"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    return None


def _read_bytes(path: Path) -> bytes:
    problem = file_problem(path)
    if problem:
        raise InputImageError(f"{path}: {problem}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputImageError(f"{path}: cannot read ({describe_os_error(exc)})") from None


def _check_header(path: Path, data: bytes) -> ImageHeader:
    try:
        header = read_header(data)
    except HeaderTooLarge as exc:
        raise InputImageError(f"{path}: image is too large ({exc}; limit {MAX_PIXELS // 1_000_000} "
                              f"megapixels)") from None
    except HeaderError as exc:
        raise InputImageError(f"{path}: not a readable image ({exc})") from None
    if header is None:
        raise InputImageError(f"{path}: not a readable image (not one of the formats "
                              f"{', '.join(f.upper() for f in FORMATS)})")
    _check_pixels(path, header.width, header.height)
    if header.decoded_bytes > MAX_DECODED_BYTES:
        raise InputImageError(f"{path}: image of {header.width}x{header.height} pixels is too large: it decodes to "
                              f"{header.decoded_bytes / 2**20:.0f} MiB (limit {MAX_DECODED_BYTES // 2**20} MiB)")
    if header.format == "tiff" and header.orientation != 1:
        # OpenCV's TIFF decoder applies the tag itself for some pixel layouts and not others.
        raise InputImageError(f"{path}: TIFF with orientation tag {header.orientation} (stored rotated or "
                              f"mirrored) is not supported; save it upright (orientation 1) or as JPEG/PNG")
    if header.frames > 1:
        raise InputImageError(f"{path}: {header.format.upper()} with more than one {header.frame_word[:-1]} "
                              f"(animated or multi-page); only single images are protected: split it into "
                              f"images, or convert an animation to a video")
    return header


def decode_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file upright, as stored otherwise: ``(H, W)`` gray, ``(H, W, 3)`` BGR or
    ``(H, W, 4)`` BGRA; ``uint8``, ``uint16`` or ``float32``.

    Raises ``InputImageError`` naming the file for a missing, empty, unreadable, undecodable,
    truncated, animated/multi-page or too large file, or an unsupported format.
    """
    return _decode(Path(path))[0]


def _decode(path: Path, data: bytes | None = None) -> tuple[np.ndarray, bytes, ImageHeader]:
    """``decode_image``, with the file's bytes and header; ``data``: the bytes, when they are
    already in memory (an upload; ``path`` then only names it in errors)."""
    if data is None:
        data = _read_bytes(path)
    elif not data:
        raise InputImageError(f"{path}: empty file (0 bytes)")
    header = _check_header(path, data)
    problem = truncation(data) or (jpeg_damage(data) if header.format == "jpeg" else None)
    if problem:
        raise InputImageError(f"{path}: {problem}; the file is incomplete or damaged, copy it again")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # ignores EXIF: we apply it
    if image is None:
        raise InputImageError(f"{path}: not a readable image (corrupt, truncated or not an image format)")
    _check_pixels(path, image.shape[1], image.shape[0])
    if image.dtype not in (np.uint8, np.uint16):
        image = image.astype(np.float32)
    return upright(image, header.orientation), data, header


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit copy of a decoded image: the high byte of 16-bit, ``[0, 1]`` floats scaled by 255."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def from_uint8(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The inverse of ``to_uint8`` for a pipeline output: 8-bit values in the full range of ``dtype``."""
    if dtype == np.uint8:
        return image
    if dtype == np.uint16:
        return image.astype(np.uint16) * 257
    return image.astype(np.float32) / 255.0


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file upright, in its stored layout, as ``uint8``: ``(H, W)`` gray, ``(H, W, 3)``
    BGR or ``(H, W, 4)`` BGRA. Errors as ``decode_image``."""
    return to_uint8(decode_image(path))


def read_photo(path: str | os.PathLike[str], data: bytes | None = None) -> tuple[np.ndarray, Restore]:
    """A whole photo as ``(H, W, 3) uint8 BGR`` (upright), and its ``Restore``: the way back from a
    processed copy to the file's own layout and depth, and to the file's own bytes. ``data``: the
    file's bytes when they are already in memory (an upload); ``path`` then only names it.

    Raises ``InputImageError`` as ``decode_image`` does, and for a photo smaller than
    ``MIN_FACE_IMAGE_SIDE`` pixels on a side ("too small to contain a face").
    """
    stored, data, header = _decode(Path(path), data)
    height, width = stored.shape[:2]
    if min(height, width) < MIN_FACE_IMAGE_SIDE:
        raise InputImageError(f"{path}: image of {width}x{height} pixels is too small to contain a face "
                              f"(need at least {MIN_FACE_IMAGE_SIDE}x{MIN_FACE_IMAGE_SIDE})")
    if stored.ndim == 3 and stored.shape[2] == 1:
        stored = stored[:, :, 0]
    restore = Restore(stored, data, header)
    image = to_uint8(restore.colour)
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if restore.gray else np.ascontiguousarray(image)
    return image, restore


class Restore:
    """What ``read_photo`` keeps of a photo file to write its output.

    ``restore(bgr, changed=None)`` turns a processed copy back into the file's own layout and
    depth: gray stays gray, an alpha channel is put back unchanged, and 16-bit or float pixels
    keep their full depth where ``changed()`` (a function returning ``(H, W) bool``: where the
    pipeline may have written; it is called only for such photos) is False. Without ``changed``,
    every pixel comes from ``bgr``.

    ``unchanged(suffix)``: the bytes to write for the photo when nothing in it changed (no face
    found).
    """

    def __init__(self, stored: np.ndarray, data: bytes, header: ImageHeader) -> None:
        self.stored = stored
        self.gray = stored.ndim == 2
        self.colour = stored if self.gray else stored[:, :, :3]
        self._data = data
        self._header = header

    def __call__(self, bgr: np.ndarray, changed: Callable[[], np.ndarray] | None = None) -> np.ndarray:
        stored, colour = self.stored, self.colour
        out = from_uint8(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if self.gray else bgr, stored.dtype)
        if changed is not None and stored.dtype != np.uint8:
            region = changed()
            keep = ~region if self.gray else ~region[:, :, None]
            out = np.where(keep, colour, out)
        if not self.gray and stored.shape[2] == 4:
            out = np.concatenate([out, stored[:, :, 3:]], axis=2)
        return out

    def unchanged(self, suffix: str) -> bytes | None:
        """The file's own encoded photo for an output named with ``suffix``, when nothing in it
        changed (no face found): a JPEG written as JPEG is its compressed data without metadata
        (``jpeg.strip_metadata``), a GIF written as GIF its own palette and indices without
        metadata (through Pillow, when installed). ``None`` otherwise: then write the pixels with
        ``write_image``, which is lossless for every other suffix (``LOSSY_SUFFIXES``)."""
        kind, suffix = self._header.format, suffix.lower()
        if kind == "jpeg" and suffix in JPEG_SUFFIXES:
            try:
                return strip_metadata(self._data, self._header.orientation)
            except JpegStructureError:
                return None   # OpenCV decoded it all the same; its pixels are written instead
        if kind == "gif" and suffix == ".gif" and self._header.orientation == 1:
            return _gif_without_metadata(self._data)
        return None


def _gif_without_metadata(data: bytes) -> bytes | None:
    """A one-frame GIF saved again by Pillow with its palette and pixel indices and no comment or
    application extension (OpenCV's GIF encoder quantises again, which is lossy); ``None``
    without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return None
    import io

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        kept = {name: image.info[name] for name in ("transparency", "background") if name in image.info}
        image.info.clear()   # comments, XMP and other application extensions
        buffer = io.BytesIO()
        image.save(buffer, "GIF", **kept)
    return buffer.getvalue()


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise InputImageError(f"{path}: image of {width}x{height} pixels is too large "
                              f"(limit {MAX_PIXELS // 1_000_000} megapixels)")
    if width <= 0 or height <= 0:
        raise InputImageError(f"{path}: not a readable image (its header says {width}x{height} pixels)")


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an image (gray, BGR or BGRA; ``uint8``, ``uint16`` or ``float32``) atomically; the
    format follows the file's suffix. Creates parent folders.

    Raises ``OutputError`` naming the file when it cannot be encoded or written (disk full, folder
    not writable, a folder in the way); nothing is left under its name then.
    """
    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", image)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"{path}: cannot encode a {image.dtype} image with {image.shape[-1] if image.ndim == 3 else 1} "
                          f"channel(s) as {path.suffix or 'PNG'}")
    write_bytes(path, encoded.tobytes())
