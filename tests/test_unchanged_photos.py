"""A photo in which no face is found leaves with its pixels as they were: a JPEG is not re-encoded
(its compressed data, without metadata), a GIF keeps its palette, other formats are lossless."""

import io

import cv2
import numpy as np
import pytest
from facekit import needs_yunet, protect

from anonymixer.face.jpeg import JpegStructureError, strip_metadata

Image = pytest.importorskip("PIL.Image", reason="Pillow (dev extra) writes the test photos")
from PIL import ImageCms, ImageOps  # noqa: E402

SECRETS = (b"PhoneMaker", b"secret comment", b"secret xmp", b"TRAILER")


def textured(height=120, width=200, seed=1):
    """A face-less photo with texture, so that a re-encode would change pixels: ``(H, W, 3) uint8`` RGB."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3)


def jpeg_with_metadata(orientation=1, mode="RGB", **options):
    """A JPEG with EXIF (orientation, maker), an ICC profile, a comment, XMP and data after its end marker."""
    image = Image.fromarray(textured()).convert(mode)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    if orientation != 1:
        exif[0x0112] = orientation
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), icc_profile=icc, comment=b"secret comment",
               xmp=b"<x:xmpmeta>secret xmp</x:xmpmeta>", **options)
    return buffer.getvalue() + b"TRAILER"


def decoded(data, flags=cv2.IMREAD_UNCHANGED):
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"restart_marker_blocks": 2},
                                     {"subsampling": 0, "quality": 80}, {"mode": "CMYK"}, {"mode": "L"}],
                         ids=["baseline", "progressive", "restart markers", "4:4:4", "CMYK (Adobe APP14)", "gray"])
def test_stripping_a_jpeg_keeps_its_decoded_pixels_bit_for_bit_and_drops_every_metadata_segment(options):
    original = jpeg_with_metadata(**options)
    stripped = strip_metadata(original)
    assert np.array_equal(decoded(stripped), decoded(original))
    assert not [secret for secret in SECRETS if secret in stripped]
    with Image.open(io.BytesIO(stripped)) as image:
        assert not {"exif", "icc_profile", "comment", "xmp"} & set(image.info), image.info


def test_a_sideways_jpeg_keeps_only_its_orientation_tag_so_viewers_show_it_as_it_was_searched():
    original = jpeg_with_metadata(orientation=6)
    stripped = strip_metadata(original, orientation=6)
    with Image.open(io.BytesIO(stripped)) as after, Image.open(io.BytesIO(original)) as before:
        assert dict(after.getexif()) == {0x0112: 6}
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(after)), np.asarray(ImageOps.exif_transpose(before)))


def test_a_jpeg_whose_markers_cannot_be_walked_to_its_end_is_refused():
    original = jpeg_with_metadata()
    cut = original[: original.rindex(b"\xff\xd9")]
    with pytest.raises(JpegStructureError):
        strip_metadata(cut)


@needs_yunet
@pytest.mark.usefixtures("reuse_tiny_model")
def test_a_jpeg_without_a_face_is_written_from_its_own_compressed_data_not_re_encoded(tmp_path, key_file, capsys):
    original = jpeg_with_metadata(orientation=6)
    (tmp_path / "wall.jpg").write_bytes(original)
    assert protect([tmp_path / "wall.jpg"], key_file, tmp_path / "out") == 0
    written = (tmp_path / "out" / "wall.jpg").read_bytes()
    assert "no face found; written unchanged" in capsys.readouterr().out
    assert written == strip_metadata(original, orientation=6)
    assert np.array_equal(decoded(written), decoded(original))


@needs_yunet
@pytest.mark.usefixtures("reuse_tiny_model")
def test_a_gif_without_a_face_keeps_its_palette_and_pixels_and_loses_its_comment(tmp_path, key_file):
    image = Image.fromarray(textured()).convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(tmp_path / "wall.gif", comment=b"secret comment")
    assert protect([tmp_path / "wall.gif"], key_file, tmp_path / "out") == 0
    written = (tmp_path / "out" / "wall.gif").read_bytes()
    assert b"secret comment" not in written
    with Image.open(io.BytesIO(written)) as after, Image.open(tmp_path / "wall.gif") as before:
        assert np.array_equal(np.asarray(after.convert("RGB")), np.asarray(before.convert("RGB")))


@needs_yunet
@pytest.mark.usefixtures("reuse_tiny_model")
def test_a_sixteen_bit_png_without_a_face_keeps_every_bit(tmp_path, key_file):
    deep = textured().astype(np.uint16) * 257 + np.random.default_rng(2).integers(0, 257, (120, 200, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "wall.png"), deep)
    assert protect([tmp_path / "wall.png"], key_file, tmp_path / "out") == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "wall.png"), cv2.IMREAD_UNCHANGED), deep)
