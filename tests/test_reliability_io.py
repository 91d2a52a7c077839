"""Never leak, never lose (photos): EXIF orientation, multi-frame files, header checks, 16-bit,
atomic writes under injected faults, and outputs that never land on inputs or on each other.

Each case asserts what matters for a privacy tool: no unprotected face leaves, nothing is lost
(inputs and earlier outputs intact, the rest of the batch done), no traceback, the README's exit code.
"""

import errno
import io
import os
import struct

import cv2
import numpy as np
import pytest
from facekit import FACE_REPLACED, failure_lines, leftovers, needs_yunet, no_traceback, photo, protect
from PIL import Image, ImageOps

from anonymixer.atomic import PARTIAL_MARK
from anonymixer.face.imageheader import read_header
from anonymixer.face.photos import ASTRONAUT_FACE_BOX

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]

TOP, BOTTOM, LEFT, RIGHT = ASTRONAUT_FACE_BOX
# numpy views that store an upright (H, W, C) image so that EXIF orientation N turns it upright again
STORED_FOR = {
    2: lambda up: up[:, ::-1],
    3: lambda up: up[::-1, ::-1],
    4: lambda up: up[::-1],
    5: lambda up: up.transpose(1, 0, 2),
    6: lambda up: np.rot90(up, 1),
    7: lambda up: np.rot90(up.transpose(1, 0, 2), 2),
    8: lambda up: np.rot90(up, -1),
}


def save_with_orientation(path, upright_bgr, orientation, **options):
    """Store ``upright_bgr`` turned as a camera would, tagged with EXIF ``orientation``; check the
    file with Pillow's own ``exif_transpose`` (an independent reader) and return what it shows."""
    stored = np.ascontiguousarray(STORED_FOR[orientation](upright_bgr[:, :, ::-1]))
    exif = Image.Exif()
    exif[274] = orientation
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **options)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))[:, :, ::-1]
    assert shown.shape == upright_bgr.shape
    return shown


def face_change(before, after):
    """Mean absolute difference on the astronaut's face box, and on a corner far from the face."""
    face = np.abs(before[TOP:BOTTOM, LEFT:RIGHT].astype(int) - after[TOP:BOTTOM, LEFT:RIGHT]).mean()
    corner = np.abs(before[400:, :100].astype(int) - after[400:, :100]).mean()
    return face, corner


# --- EXIF orientation -------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(2, 9))
def test_a_phone_jpeg_stored_turned_is_protected_upright_and_written_upright(tmp_path, key_file, capsys,
                                                                            orientation):
    upright = save_with_orientation(tmp_path / "phone.jpg", photo("astronaut"), orientation, quality=95)
    assert protect([tmp_path / "phone.jpg"], key_file, tmp_path / "out") == 0
    printed = no_traceback(capsys).out
    assert "1 face(s) protected" in printed
    written = tmp_path / "out" / "phone.jpg"
    assert read_header(written.read_bytes()).orientation == 1  # no tag left to turn it again
    result = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)
    assert result.shape == upright.shape
    face, corner = face_change(upright, result)
    # the face is replaced (facekit.FACE_REPLACED), the rest is the photo
    assert face > FACE_REPLACED and corner < 4, (face, corner)


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".webp", {"lossless": True})])
def test_orientation_in_png_and_webp_gives_the_same_output_as_the_upright_photo(tmp_path, key_file, capsys,
                                                                                suffix, options):
    cv2.imwrite(str(tmp_path / "upright.png"), photo("astronaut"))
    save_with_orientation(tmp_path / f"turned{suffix}", photo("astronaut"), 6, **options)
    assert protect([tmp_path / "upright.png", tmp_path / f"turned{suffix}"], key_file, tmp_path / "out") == 0
    no_traceback(capsys)
    upright = cv2.imread(str(tmp_path / "out" / "upright.png"))
    turned = cv2.imread(str(tmp_path / "out" / f"turned{suffix}"))
    assert np.array_equal(upright, turned)


def test_aligned_crops_apply_orientation_too(tmp_path, key_file, capsys):
    crop = cv2.resize(photo("astronaut")[TOP:BOTTOM, LEFT:RIGHT], (256, 256), interpolation=cv2.INTER_AREA)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "upright.png"), crop)
    save_with_orientation(tmp_path / "in" / "tagged.png", crop, 8)
    cv2.imwrite(str(tmp_path / "in" / "untagged.png"), np.ascontiguousarray(STORED_FOR[8](crop)))
    assert protect([tmp_path / "in"], key_file, tmp_path / "out", "--aligned") == 0
    no_traceback(capsys)
    out = {name: cv2.imread(str(tmp_path / "out" / f"{name}.png")) for name in ("upright", "tagged", "untagged")}
    assert np.array_equal(out["tagged"], out["upright"])
    assert not np.array_equal(out["untagged"], out["upright"])  # the check can tell a turned crop


# --- files that are more than one image, or too large to decode -------------------------------

def animated(fmt):
    frames = [Image.fromarray(np.roll(photo("astronaut")[:, :, ::-1], 8 * i, axis=1)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("name, fmt", [("anim.gif", "GIF"), ("anim.png", "PNG"), ("anim.webp", "WEBP"),
                                       ("pages.tiff", "TIFF")])
def test_a_file_of_several_frames_is_refused_by_name_not_cut_to_one(tmp_path, key_file, capsys, name, fmt):
    (tmp_path / name).write_bytes(animated(fmt))
    cv2.imwrite(str(tmp_path / "good.png"), photo("astronaut"))
    assert protect([tmp_path / name, tmp_path / "good.png"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and name in lines[0] and "more than one" in lines[0], lines
    assert not (tmp_path / "out" / name).exists() and (tmp_path / "out" / "good.png").is_file()


def huge_tiff(side=40_000):
    """A TIFF header announcing side x side RGB pixels, with almost no data behind it."""
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 8), (277, 3, 1, 3), (278, 4, 1, side), (279, 4, 1, 3 * side * side % 2**32)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 8) + ifd


def huge_webp(side=16_000):
    """A WebP (extended format) whose canvas is side x side, with a tiny lossless image chunk."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (side - 1).to_bytes(3, "little") * 2
    vp8l = b"VP8L" + struct.pack("<I", 6) + b"\x2f" + b"\0" * 5
    body = b"WEBP" + vp8x + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("name, make", [("huge.tiff", huge_tiff), ("huge.webp", huge_webp)])
def test_a_huge_image_is_refused_from_its_header_before_decoding(tmp_path, key_file, capsys, monkeypatch,
                                                                 name, make):
    (tmp_path / name).write_bytes(make())
    real = cv2.imdecode
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: decoded.append(len(data)) or real(data, flags))
    assert protect([tmp_path / name], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and name in lines[0] and "too large" in lines[0], lines
    assert decoded == []


def test_a_16_bit_png_is_written_back_16_bit_with_every_other_pixel_bit_exact(tmp_path, key_file, capsys):
    rng = np.random.default_rng(0)
    deep = photo("astronaut").astype(np.uint16) * 256 + rng.integers(0, 256, (512, 512, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert protect([tmp_path / "deep.png"], key_file, tmp_path / "out") == 0
    no_traceback(capsys)
    result = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == deep.shape
    face, corner = face_change(deep >> 8, result >> 8)
    assert face > FACE_REPLACED
    assert np.array_equal(result[400:, :100], deep[400:, :100])  # low bytes kept away from the face


def test_a_16_bit_photo_whose_face_is_masked_keeps_no_low_bits_of_the_face(tmp_path, key_file, capsys,
                                                                          monkeypatch):
    from anonymixer.runtime.protector import Protector

    deep = photo("astronaut").astype(np.uint16) * 256 + 255  # low bytes all ones: would show in the fill
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    monkeypatch.setattr(Protector, "protect", lambda self, faces: (_ for _ in ()).throw(RuntimeError("injected")))
    assert protect([tmp_path / "deep.png"], key_file, tmp_path / "out") == 1
    assert "masked" in no_traceback(capsys).out
    result = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert (result[80:160, 190:270] == 0).all()  # the middle of the face: the fill, exactly


# --- atomic writes under injected faults --------------------------------------------------------

@pytest.fixture
def full_disk(monkeypatch):
    """Every write to one of our temporary files fails with ENOSPC, as on a full disk."""
    real = os.write

    def write(fd, data):
        if PARTIAL_MARK in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell our files from others")
    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("aligned", [False, True])
def test_a_full_disk_leaves_no_partial_file_and_the_earlier_output_intact(tmp_path, key_file, capsys, full_disk,
                                                                          aligned):
    crop = cv2.resize(photo("astronaut")[TOP:BOTTOM, LEFT:RIGHT], (256, 256))
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "face.png"), photo("astronaut") if not aligned else crop)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "face.png").write_bytes(b"earlier complete output")
    assert protect([tmp_path / "in"], key_file, tmp_path / "out", *(["--aligned"] if aligned else [])) == 1
    printed = no_traceback(capsys).out
    lines = failure_lines(printed)
    assert len(lines) == 1 and "face.png" in lines[0] and "No space left on device" in lines[0], lines
    assert "replaced" not in printed
    assert (tmp_path / "out" / "face.png").read_bytes() == b"earlier complete output"
    assert leftovers(tmp_path) == []


def test_an_output_folder_that_cannot_be_written_is_one_line_per_input(tmp_path, key_file, capsys,
                                                                       read_only_outputs):
    cv2.imwrite(str(tmp_path / "face.png"), photo("astronaut"))
    assert protect([tmp_path / "face.png"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "face.png" in lines[0] and "Read-only file system" in lines[0], lines


def test_an_earlier_output_is_replaced_and_the_summary_says_so(tmp_path, key_file, capsys):
    cv2.imwrite(str(tmp_path / "face.png"), photo("astronaut"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "face.png").write_bytes(b"earlier output")
    assert protect([tmp_path / "face.png"], key_file, tmp_path / "out") == 0
    assert "1 replaced an earlier file" in no_traceback(capsys).out
    assert cv2.imread(str(tmp_path / "out" / "face.png")).shape == (512, 512, 3)


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, key_file, capsys):
    cv2.imwrite(str(tmp_path / "face.png"), photo("astronaut"))
    (tmp_path / "out").write_text("a file")
    assert protect([tmp_path / "face.png"], key_file, tmp_path / "out") == 2
    err = no_traceback(capsys).err
    assert len(err.strip().splitlines()) == 1 and "a file of that name is in the way" in err


def test_a_file_in_the_way_of_an_output_subfolder_fails_that_input_only(tmp_path, key_file, capsys):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "in" / "sub" / "deep.png"), photo("astronaut"))
    cv2.imwrite(str(tmp_path / "in" / "top.png"), photo("astronaut"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("a file where a folder should be")
    assert protect([tmp_path / "in"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "sub" in lines[0] and "in the way" in lines[0], lines
    assert (tmp_path / "out" / "top.png").is_file()


# --- outputs never land on inputs or on each other ------------------------------------------------

@pytest.mark.parametrize("aligned", [False, True])
def test_out_equal_to_the_input_folder_overwrites_nothing(tmp_path, key_file, capsys, aligned):
    crop = cv2.resize(photo("astronaut")[TOP:BOTTOM, LEFT:RIGHT], (256, 256))
    cv2.imwrite(str(tmp_path / "a.png"), crop if aligned else photo("astronaut"))
    cv2.imwrite(str(tmp_path / "b.png"), crop if aligned else photo("grace_hopper"))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    assert protect([tmp_path], key_file, tmp_path, *(["--aligned"] if aligned else [])) == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 2 and all("overwrite the input itself" in line for line in lines), lines
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png")} == before


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_an_output_path_that_is_a_link_to_an_input_is_refused(tmp_path, key_file, capsys, link):
    cv2.imwrite(str(tmp_path / "face.png"), photo("astronaut"))
    before = (tmp_path / "face.png").read_bytes()
    (tmp_path / "out").mkdir()
    (os.link if link == "hard" else os.symlink)(tmp_path / "face.png", tmp_path / "out" / "face.png")
    assert protect([tmp_path / "face.png"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "would overwrite the input itself" in lines[0], lines
    assert (tmp_path / "face.png").read_bytes() == before


def test_an_output_that_would_land_on_another_input_is_refused(tmp_path, key_file, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "face.png"), photo("astronaut"))
    cv2.imwrite(str(tmp_path / "out" / "face.png"), photo("grace_hopper"))
    before = (tmp_path / "out" / "face.png").read_bytes()
    code = protect([tmp_path / "in" / "face.png", tmp_path / "out" / "face.png"], key_file, tmp_path / "out")
    lines = failure_lines(no_traceback(capsys).out)
    assert code == 1 and (tmp_path / "out" / "face.png").read_bytes() == before
    assert any("would overwrite the input" in line for line in lines), lines


@pytest.mark.parametrize("aligned", [False, True])
def test_two_inputs_of_one_name_do_not_overwrite_each_other(tmp_path, key_file, capsys, aligned):
    crop = cv2.resize(photo("astronaut")[TOP:BOTTOM, LEFT:RIGHT], (256, 256))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "face.png"), crop if aligned else photo("astronaut"))
    code = protect([tmp_path / "a" / "face.png", tmp_path / "b" / "face.png"], key_file, tmp_path / "out",
                   *(["--aligned"] if aligned else []))
    lines = failure_lines(no_traceback(capsys).out)
    assert code == 1 and (tmp_path / "out" / "face.png").is_file()
    assert len(lines) == 1 and "would overwrite the output of" in lines[0] and str(tmp_path / "a") in lines[0]


# --- inputs that are not plain files, and names that could forge report lines ---------------------

def test_a_symlink_loop_among_inputs_is_one_line_and_the_rest_is_done(tmp_path, key_file, capsys):
    (tmp_path / "in").mkdir()
    os.symlink("b.jpg", tmp_path / "in" / "a.jpg")
    os.symlink("a.jpg", tmp_path / "in" / "b.jpg")
    cv2.imwrite(str(tmp_path / "in" / "c.png"), photo("astronaut"))
    assert protect([tmp_path / "in" / "a.jpg", tmp_path / "in"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert (tmp_path / "out" / "c.png").is_file()
    assert any("a.jpg" in line and "symbolic link" in line for line in lines), lines


def test_a_folder_named_like_an_image_is_said_to_be_a_folder(tmp_path, key_file, capsys):
    (tmp_path / "empty.jpg").mkdir()
    (tmp_path / "in" / "nested.jpg").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "in" / "nested.jpg" / "face.png"), photo("astronaut"))
    assert protect([tmp_path / "empty.jpg", tmp_path / "in"], key_file, tmp_path / "out") == 1
    printed = no_traceback(capsys).out
    assert any("empty.jpg" in line and "folder" in line for line in failure_lines(printed))
    assert "nested.jpg: a folder named like an image" in printed
    assert (tmp_path / "out" / "nested.jpg" / "face.png").is_file()


def test_control_characters_in_file_names_cannot_forge_report_lines(tmp_path, key_file, capsys):
    name = "evil\nnote: all good\x1b[2K.jpg"
    (tmp_path / name).write_text("not a photo")
    assert protect([tmp_path / name], key_file, tmp_path / "out") == 1
    printed = no_traceback(capsys).out
    assert "\x1b" not in printed and not any(line.startswith("note: all good") for line in printed.splitlines())
    assert "evil\\nnote: all good\\x1b[2K.jpg" in printed
