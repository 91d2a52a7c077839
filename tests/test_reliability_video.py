"""Never leak, never lose (videos): writer faults, unwritable outputs, truncated and blanked videos,
and SIGTERM/SIGINT on a real `anonymixer protect` process.

Each case asserts: no unprotected frame leaves, an earlier output is intact unless replaced whole,
no partial file is left, no traceback, the README's exit code.
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from facekit import failure_lines, leftovers, needs_yunet, no_traceback, photo, protect, read_video, write_video

from anonymixer.atomic import PARTIAL_MARK
from anonymixer.face.videowriter import VideoWriter

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]

REPO = Path(__file__).resolve().parents[1]
EARLIER = b"an earlier, complete output"


def clip(path, frames=4, size=(320, 240)):
    """A short MJPG video of the astronaut moving sideways, ``frames`` long at 10 fps."""
    frame = cv2.resize(photo("astronaut"), size, interpolation=cv2.INTER_AREA)
    write_video(path, [np.roll(frame, 2 * i, axis=1) for i in range(frames)], fps=10.0)
    return path


def with_earlier_output(out_dir, name="clip.avi"):
    out_dir.mkdir()
    (out_dir / name).write_bytes(EARLIER)


def losing_mux(mode, lose_from=3):
    """``VideoWriter._mux`` that, from the video's frame ``lose_from`` on, drops packets silently
    (as a writer on a full disk may) or raises (as FFmpeg does on a write error)."""
    real = VideoWriter._mux
    written = []

    def mux(self, packet):
        if packet.stream is self._stream:
            written.append(1)
            if len(written) >= lose_from:
                if mode == "raise":
                    raise OSError(errno.ENOSPC, "No space left on device")
                return
        real(self, packet)
    return mux


@pytest.mark.parametrize("mode", ["drop", "raise"])
def test_a_video_writer_that_fails_mid_run_is_an_error_with_the_frame_number(tmp_path, key_file, capsys,
                                                                            monkeypatch, mode):
    clip(tmp_path / "clip.avi")
    with_earlier_output(tmp_path / "out")
    monkeypatch.setattr(VideoWriter, "_mux", losing_mux(mode))
    assert protect([tmp_path / "clip.avi"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "clip.avi" in lines[0] and "frame 3" in lines[0], lines
    assert (tmp_path / "out" / "clip.avi").read_bytes() == EARLIER
    assert leftovers(tmp_path) == []


def test_a_video_is_checked_frame_by_frame_before_it_replaces_an_earlier_output(tmp_path, key_file, capsys):
    clip(tmp_path / "clip.avi")
    with_earlier_output(tmp_path / "out")
    assert protect([tmp_path / "clip.avi"], key_file, tmp_path / "out") == 0
    assert "1 replaced an earlier file" in no_traceback(capsys).out
    frames, _ = read_video(tmp_path / "out" / "clip.avi")
    assert len(frames) == 4 and leftovers(tmp_path) == []


def test_a_video_output_path_that_is_a_folder_is_one_line(tmp_path, key_file, capsys):
    clip(tmp_path / "clip.avi")
    (tmp_path / "out" / "clip.avi").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "face.png"), photo("astronaut"))
    assert protect([tmp_path / "clip.avi", tmp_path / "face.png"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "clip.avi" in lines[0] and "is a folder" in lines[0], lines
    assert (tmp_path / "out" / "face.png").is_file()


def test_a_video_output_folder_that_is_read_only_is_one_line(tmp_path, key_file, capsys, read_only_outputs):
    clip(tmp_path / "clip.avi")
    assert protect([tmp_path / "clip.avi"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "clip.avi" in lines[0] and "Read-only file system" in lines[0], lines


def test_a_truncated_video_is_a_failure_that_says_how_many_frames_were_decoded(tmp_path, key_file, capsys):
    data = clip(tmp_path / "whole.avi", frames=30, size=(160, 120)).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    decodable = len(read_video(tmp_path / "cut.avi")[0])
    assert 0 < decodable < 30
    assert protect([tmp_path / "cut.avi"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert any(f"only {decodable} of the 30 frames" in line for line in lines), lines
    assert len(read_video(tmp_path / "out" / "cut.avi")[0]) == decodable


def test_a_video_wholly_blanked_by_no_face_mask_is_a_failure(tmp_path, key_file, capsys):
    write_video(tmp_path / "wall.avi", [np.full((120, 160, 3), 200, np.uint8)] * 3, fps=10.0)
    assert protect([tmp_path / "wall.avi"], key_file, tmp_path / "out", "--no-face", "mask") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "no face found in any of its 3 frame(s)" in lines[0], lines
    assert all((frame < 8).all() for frame in read_video(tmp_path / "out" / "wall.avi")[0])


# --- signals on a real process ------------------------------------------------------------------

def start_protect(tmp_path, key_file, inputs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "anonymixer.cli", "protect", *map(str, inputs), "--key", str(key_file),
         "--model", "random:tiny", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell may have it ignored


def wait_for_partial_output(process, folder, stem):
    """Block until the process has started writing the temporary output of ``stem``, or has ended
    (a loaded machine may take minutes to import torch: no deadline here, only pytest's own)."""
    while not any(p.name.startswith(f".{stem}{PARTIAL_MARK}") for p in leftovers(folder)) and process.poll() is None:
        time.sleep(0.05)


@pytest.mark.parametrize("sent, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_video_removes_the_partial_output_prints_the_summary_and_exits_non_zero(
        tmp_path, key_file, sent, code):
    clip(tmp_path / "long.avi", frames=400, size=(160, 120))
    cv2.imwrite(str(tmp_path / "later.png"), photo("astronaut"))  # photos go first: it is done before
    with_earlier_output(tmp_path / "out", "long.avi")
    process = start_protect(tmp_path, key_file, [tmp_path / "long.avi", tmp_path / "later.png"])
    wait_for_partial_output(process, tmp_path / "out", "long")
    assert process.poll() is None, process.communicate()
    process.send_signal(sent)
    out, err = process.communicate()
    assert process.returncode == code, (out, err)
    assert "Traceback" not in out + err
    assert f"interrupted by {sent.name}" in out and "output(s) written" in out
    assert (tmp_path / "out" / "long.avi").read_bytes() == EARLIER
    assert (tmp_path / "out" / "later.png").is_file()
    assert leftovers(tmp_path) == []
