"""Photos in flight (``protect --inflight N``): the same files and report lines as one at a time,
decoded at most N ahead of the one being written, fail closed per face, and Ctrl-C/SIGTERM that
leave no partial output and say how many inputs were not processed."""

import json
import re
import threading

import cv2
import numpy as np
import pytest
from facekit import failure_lines, leftovers, needs_yunet, no_traceback, photo, protect

import anonymixer.atomic as atomic
import anonymixer.face.app as app
from anonymixer.errors import Terminated
from anonymixer.runtime import Protector

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]


def face_photos(n):
    """``n`` 240x320 BGR photos: the astronaut's face at a different place in each."""
    frame = cv2.resize(photo("astronaut"), (320, 240), interpolation=cv2.INTER_AREA)
    return [np.roll(frame, 7 * i, axis=1) for i in range(n)]


def face_folder(folder, n):
    """``p00.png`` ... : ``n`` photos with one face each; their paths in input order."""
    folder.mkdir()
    paths = [folder / f"p{i:02d}.png" for i in range(n)]
    for path, image in zip(paths, face_photos(n), strict=True):
        cv2.imwrite(str(path), image)
    return paths


def mixed_folder(folder):
    """Twelve inputs, sorted by name: faces in PNG, JPEG and gray, a photo without a face, and two
    bad files (empty, not an image) around it."""
    folder.mkdir()
    images = iter(face_photos(9))
    for name in ("p00.png", "p01.png", "p03.png", "p07.png", "p09.png", "p10.png", "p11.png"):
        cv2.imwrite(str(folder / name), next(images))
    cv2.imwrite(str(folder / "p08.jpg"), next(images))
    cv2.imwrite(str(folder / "p06_gray.png"), cv2.cvtColor(next(images), cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "p04_wall.png"), np.full((240, 320, 3), 180, np.uint8))
    (folder / "p02_empty.png").write_bytes(b"")
    (folder / "p05_text.png").write_text("not a photo")


def report_lines(printed, out_dir):
    """The summary without what depends on the clock (seconds, per-stage timings), ``out_dir`` as OUT."""
    return [re.sub(r" in [0-9.]+ s$", "", line).replace(str(out_dir), "OUT") for line in printed.splitlines()
            if not line.startswith("per frame:")]


def anonymixer_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("anonymixer-")]


def test_photos_in_flight_give_the_same_files_and_report_lines_as_one_at_a_time(tmp_path, key_file, capsys):
    mixed_folder(tmp_path / "in")
    (tmp_path / "first").mkdir()   # its output p07.png is claimed first: in/p07.png's is refused
    cv2.imwrite(str(tmp_path / "first" / "p07.png"), face_photos(12)[-1])
    inputs = [tmp_path / "first" / "p07.png", tmp_path / "in"]
    # --no-face mask: the wall is written masked and reported between the two bad files
    assert protect(inputs, key_file, tmp_path / "one", "--inflight", "1", "--no-face", "mask") == 1
    one = report_lines(no_traceback(capsys).out, tmp_path / "one")
    assert protect(inputs, key_file, tmp_path / "three", "--inflight", "3", "--no-face", "mask") == 1
    three = report_lines(no_traceback(capsys).out, tmp_path / "three")
    assert three == one
    failed = failure_lines("\n".join(one))
    assert [re.match(r".*/in/(p\d\d\w*)\.png", line).group(1) for line in failed] == [
        "p02_empty", "p04_wall", "p05_text", "p07"], failed
    assert "would overwrite the output of" in failed[3], failed
    names = sorted(p.name for p in (tmp_path / "one").iterdir() if p.name != "report.json")
    assert len(names) == 10 and sorted(p.name for p in (tmp_path / "three").iterdir() if p.name != "report.json") == names
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes(), name
    records = [json.loads((tmp_path / run / "report.json").read_text())["files"] for run in ("one", "three")]
    assert [[(f["input"], f["status"], f["output_sha256"]) for f in files] for files in records] == [
        [(f["input"], f["status"], f["output_sha256"]) for f in records[0]]] * 2


def test_photos_are_decoded_at_most_inflight_ahead_of_the_one_being_written(tmp_path, key_file, monkeypatch):
    face_folder(tmp_path / "in", 12)
    real_read, real_write = app.read_photo, app.write_image
    reads, writes, ahead = [], [], []

    def read(path):
        reads.append(path)
        ahead.append(len(reads) - len(writes))
        return real_read(path)

    def write(path, image):
        real_write(path, image)
        writes.append(path)

    monkeypatch.setattr(app, "read_photo", read)
    monkeypatch.setattr(app, "write_image", write)
    assert protect([tmp_path / "in"], key_file, tmp_path / "out", "--inflight", "3") == 0
    assert len(reads) == len(writes) == 12
    assert max(ahead) == 3   # three in flight, never more, whatever the folder's size


def test_a_protection_failure_on_one_photo_in_flight_masks_that_face(tmp_path, key_file, capsys, monkeypatch):
    paths = face_folder(tmp_path / "in", 5)
    assert protect([tmp_path / "in"], key_file, tmp_path / "clean", "--inflight", "3") == 0
    real, calls = Protector.protect, []

    def third_call_fails(self, faces):
        calls.append(len(faces))
        if len(calls) == 3:
            raise RuntimeError("forced failure")
        return real(self, faces)

    monkeypatch.setattr(Protector, "protect", third_call_fails)
    no_traceback(capsys)
    assert protect([tmp_path / "in"], key_file, tmp_path / "out", "--inflight", "3") == 1
    assert calls == [1] * 5   # one face per photo, one call each, in input order
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and lines[0].startswith(f"{paths[2]}: face 1 of 1 at "), lines
    assert lines[0].endswith("masked: protection failed: RuntimeError: forced failure"), lines
    x, y, w, h = map(int, re.search(r"at x=(-?\d+) y=(-?\d+) w=(\d+) h=(\d+)", lines[0]).groups())
    masked = cv2.imread(str(tmp_path / "out" / "p02.png"))
    assert not masked[max(y, 0):y + h, max(x, 0):x + w].any()   # every pixel of the face is covered
    for i in (0, 1, 3, 4):
        assert (tmp_path / "out" / f"p0{i}.png").read_bytes() == (tmp_path / "clean" / f"p0{i}.png").read_bytes()


def raise_on_call(n, real, exc):
    """``real`` that raises ``exc`` (instead of running) on its ``n``-th call."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise exc()
        return real(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("where, inflight", [("write", "1"), ("write", "3"), ("read", "3")])
@pytest.mark.parametrize("exc, code, name", [(KeyboardInterrupt, 130, "SIGINT"), (Terminated, 143, "SIGTERM")])
def test_an_interrupt_with_photos_in_flight_writes_nothing_partial_and_counts_what_was_not_processed(
        tmp_path, key_file, capsys, monkeypatch, where, inflight, exc, code, name):
    paths = face_folder(tmp_path / "in", 10)
    if where == "write":   # the fourth photo's complete temporary file is about to be renamed
        monkeypatch.setattr(atomic, "commit", raise_on_call(4, atomic.commit, exc))
    else:                  # the sixth photo is being decoded, ahead of the photos in flight
        monkeypatch.setattr(app, "read_photo", raise_on_call(6, app.read_photo, exc))
    assert protect([tmp_path / "in"], key_file, tmp_path / "out", "--inflight", inflight) == code
    printed = no_traceback(capsys).out
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != "report.json")
    done = len(written)
    assert written == [p.name for p in paths[:done]] and 1 <= done <= 5, written
    record = json.loads((tmp_path / "out" / "report.json").read_text())
    assert record["complete"] is False and record["not_processed"] == 10 - done
    if where == "write":
        assert done == 3
    assert f"note: interrupted by {name}: {10 - done} input(s) not processed, first {paths[done]}" in printed
    assert f"{done} output(s) written" in printed
    assert leftovers(tmp_path) == []
    assert anonymixer_threads() == []   # the photos still in flight were dropped and their threads joined
