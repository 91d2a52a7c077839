"""Inputs read the way people see them, and inputs that are not what they seem.

Orientation is judged against Pillow's ``ImageOps.exif_transpose``, which reads a photo as
mainstream viewers do (the first EXIF segment, any integer type, XMP when EXIF says nothing): the
protected output must be that picture, upright, with the face replaced and the rest unchanged.
"""

import importlib.util
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from facekit import FACE_REPLACED, face_distance, failure_lines, needs_yunet, no_traceback, photo, protect
from PIL import Image, ImageOps, PngImagePlugin

from anonymixer.face.photos import ASTRONAUT_FACE_BOX

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]

TOP, BOTTOM, LEFT, RIGHT = ASTRONAUT_FACE_BOX
# YuNet's landmarks of the upright astronaut photo (right eye, left eye, nose, mouth corners), rounded
ASTRONAUT_LANDMARKS = np.array([[200, 102], [247, 103], [220, 125], [199, 143], [240, 144]], np.float32)
XMP_ORIENTATION_6 = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
                     b'syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
                     b'</rdf:RDF></x:xmpmeta>')


def encoded(bgr, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])).save(buffer, fmt, **options)
    return buffer.getvalue()


def exif_app1(orientation, field_type=3):
    """A JPEG APP1 EXIF segment (big-endian TIFF) holding one tag: Orientation of ``field_type``
    (3 SHORT, 8 SSHORT, 9 SLONG), or for ``None`` only a Software tag (no orientation)."""
    if orientation is None:
        entry = struct.pack(">HHI4s", 305, 2, 4, b"cam\0")
    else:
        value = struct.pack(">i" if field_type in (4, 9) else ">h", orientation).ljust(4, b"\0")
        entry = struct.pack(">HHI", 274, field_type, 1) + value
    body = b"Exif\0\0MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + b"\0\0\0\0"
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def viewer(path):
    """What a viewer shows: Pillow's exif_transpose of the file, as BGR."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))[:, :, ::-1]


@pytest.fixture(scope="module")
def judge():
    """The probe's judge where dlib is installed (``None`` otherwise): see ``facekit.face_distance``."""
    if importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None:
        return None
    from anonymixer.eval.fr import DlibRecognizer

    return DlibRecognizer()


def assert_protected_as_shown(shown, written_path, judge):
    """The output is the picture the viewer shows: face replaced (dlib no longer matches it to the
    original, where dlib is installed), a far corner unchanged."""
    result = cv2.imread(str(written_path))
    assert result is not None and result.shape == shown.shape, (None if result is None else result.shape)
    face = np.abs(shown[TOP:BOTTOM, LEFT:RIGHT].astype(int) - result[TOP:BOTTOM, LEFT:RIGHT]).mean()
    corner = np.abs(shown[400:, :100].astype(int) - result[400:, :100]).mean()
    assert face > FACE_REPLACED and corner < 4, (face, corner)
    if judge is not None:
        assert face_distance(judge, shown, result, ASTRONAUT_LANDMARKS) >= 0.6


# --- one reading of orientation: the one viewers show -----------------------------------------------

@pytest.mark.parametrize("first, second", [(1, 6), (None, 6), (1, 8), (1, 3)])
def test_a_jpeg_with_two_exif_segments_is_turned_by_the_first_as_viewers_do(tmp_path, key_file, capsys,
                                                                           first, second, judge):
    plain = encoded(photo("astronaut"), "JPEG", quality=95)
    (tmp_path / "two.jpg").write_bytes(plain[:2] + exif_app1(first) + exif_app1(second) + plain[2:])
    shown = viewer(tmp_path / "two.jpg")
    assert np.abs(shown.astype(int) - photo("astronaut")).mean() < 4  # viewers show it upright
    assert protect([tmp_path / "two.jpg"], key_file, tmp_path / "out") == 0
    assert "1 face(s) protected" in no_traceback(capsys).out
    assert_protected_as_shown(shown, tmp_path / "out" / "two.jpg", judge)


@pytest.mark.parametrize("field_type", [8, 9])
def test_orientation_stored_as_a_signed_integer_is_applied(tmp_path, key_file, capsys, field_type, judge):
    sideways = encoded(np.rot90(photo("astronaut"), 1), "JPEG", quality=95)  # orientation 6 turns it upright
    (tmp_path / "signed.jpg").write_bytes(sideways[:2] + exif_app1(6, field_type) + sideways[2:])
    shown = viewer(tmp_path / "signed.jpg")
    assert protect([tmp_path / "signed.jpg"], key_file, tmp_path / "out") == 0
    assert "1 face(s) protected" in no_traceback(capsys).out
    assert_protected_as_shown(shown, tmp_path / "out" / "signed.jpg", judge)


def _xmp_options(fmt):
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_ORIENTATION_6.decode())
        return {"pnginfo": info}
    return {"xmp": XMP_ORIENTATION_6, **({"quality": 95} if fmt == "JPEG" else {"lossless": True})}


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_orientation_only_in_xmp_is_applied_when_exif_has_none(tmp_path, key_file, capsys, fmt, suffix, judge):
    path = tmp_path / f"xmp{suffix}"
    path.write_bytes(encoded(np.rot90(photo("astronaut"), 1), fmt, **_xmp_options(fmt)))
    shown = viewer(path)
    assert np.abs(shown.astype(int) - photo("astronaut")).mean() < 4  # the viewer applies the XMP tag
    assert protect([path], key_file, tmp_path / "out") == 0
    assert "1 face(s) protected" in no_traceback(capsys).out
    assert_protected_as_shown(shown, tmp_path / "out" / path.name, judge)


# --- damaged and oversized files ---------------------------------------------------------------------

def test_a_truncated_jpeg_with_an_end_marker_appended_is_a_failed_input(tmp_path, key_file, capsys):
    whole = encoded(photo("astronaut"), "JPEG", quality=95)
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) * 2 // 3] + b"\xff\xd9")
    cv2.imwrite(str(tmp_path / "good.png"), photo("astronaut"))
    assert protect([tmp_path / "cut.jpg", tmp_path / "good.png"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "cut.jpg" in lines[0] and "damaged JPEG" in lines[0], lines
    assert not (tmp_path / "out" / "cut.jpg").exists() and (tmp_path / "out" / "good.png").is_file()


def png_header_only(width, height, bit_depth, colour_type):
    """A small PNG whose header announces ``width`` x ``height`` pixels (its data is a few bytes)."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_the_image_limit_bounds_decoded_bytes_not_only_pixels(tmp_path, key_file, capsys, monkeypatch):
    (tmp_path / "deep.png").write_bytes(png_header_only(9999, 9999, 16, 6))  # 16-bit RGBA: 800 MB decoded
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: decoded.append(len(data)))
    assert protect([tmp_path / "deep.png"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "deep.png" in lines[0] and "too large" in lines[0] and "MiB" in lines[0], lines
    assert decoded == []


# --- what is an input: never the outputs, never the current folder by accident ---------------------

def test_an_output_folder_inside_the_input_folder_is_never_searched_for_inputs(tmp_path, key_file, capsys):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), photo("astronaut"))
    (tmp_path / "in" / ".b.partial-1a2b3c4d.png").write_bytes(encoded(photo("grace_hopper"), "PNG"))  # a killed write
    for run in range(2):
        assert protect([tmp_path / "in"], key_file, tmp_path / "in" / "out") == 0
        printed = no_traceback(capsys).out
        assert "1 output(s) written" in printed, (run, printed)
    assert sorted(p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*.png")) == [
        ".b.partial-1a2b3c4d.png", "a.png", "out/a.png"]


def test_a_file_url_is_the_file_it_names_not_a_stream(tmp_path, key_file, capsys):
    cv2.imwrite(str(tmp_path / "my photo.png"), photo("astronaut"))
    url = (tmp_path / "my photo.png").as_uri()  # file:///.../my%20photo.png
    assert protect([url], key_file, tmp_path / "out") == 0
    assert "1 face(s) protected" in no_traceback(capsys).out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["my photo.png", "report.json"]


def test_an_empty_input_name_is_refused_not_read_as_the_current_folder(tmp_path, key_file, capsys, monkeypatch):
    cv2.imwrite(str(tmp_path / "here.png"), photo("astronaut"))
    monkeypatch.chdir(tmp_path)
    assert protect([""], key_file, tmp_path / "out") == 2
    err = no_traceback(capsys).err
    assert len(err.strip().splitlines()) == 1 and "empty input name" in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class CountingPipeline:
    """Stands in for a frame pipeline: records the total weight of the items inside it."""

    def __init__(self):
        self.inside, self.heaviest, self.most = [], 0, 0

    def submit(self, item):
        self.inside.append(item)
        self.heaviest = max(self.heaviest, sum(self.inside))
        self.most = max(self.most, len(self.inside))

    def result(self):
        return self.inside.pop(0)

    def close(self):
        pass


def test_photos_in_flight_weigh_at_most_the_budget_whatever_inflight():
    from anonymixer.runtime.stream import in_input_order

    items = [6, 6, 6, 12, 1, 1, 1, 1, 1]
    pipeline = CountingPipeline()
    assert list(in_input_order(pipeline, items, 4, weigh=lambda item: item, budget=10)) == items
    assert pipeline.heaviest == 12 and pipeline.most == 4  # a heavy item goes alone; light ones 4 at once
    pipeline = CountingPipeline()
    list(in_input_order(pipeline, items[:3], 4, weigh=lambda item: item, budget=10))
    assert pipeline.heaviest == 6
