"""Cameras and streams: recordings in segments that survive SIGKILL, streams that drop and come back
(--reconnect), GStreamer pipelines refused by name where OpenCV has no GStreamer.

The camera-like source is an MJPEG stream over HTTP served from the test (as IP cameras serve it),
read by OpenCV's FFmpeg backend like any stream URL."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import pytest
from clipkit import face_frames
from facekit import failure_lines, leftovers, needs_yunet, no_traceback, protect

from anonymixer.atomic import PARTIAL_MARK
from anonymixer.face import live

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]

REPO = Path(__file__).resolve().parents[1]


class MjpegCamera:
    """Serves ``multipart/x-mixed-replace`` JPEG frames at ``fps`` on 127.0.0.1; each connection
    gets ``per_connection[i]`` frames (``None``: until ``stop()``), then is closed (a dropped stream)."""

    def __init__(self, per_connection, fps=15.0):
        self.per_connection, self.fps = list(per_connection), fps
        self.jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in face_frames(8, (160, 120))]
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/camera.mjpg"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        sent = 0
        self.server.settimeout(0.1)   # so that stop() is seen while waiting for a connection
        for count in self.per_connection:
            while not self.stopping.is_set():
                try:
                    connection, _ = self.server.accept()
                    break
                except TimeoutError:
                    continue
            else:
                return
            connection.settimeout(None)
            with connection:
                try:
                    connection.recv(65536)
                    connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n")
                    frames = 0
                    while (count is None or frames < count) and not self.stopping.is_set():
                        jpeg = self.jpegs[sent % len(self.jpegs)]
                        connection.sendall(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                           + jpeg + b"\r\n")
                        frames, sent = frames + 1, sent + 1
                        time.sleep(1.0 / self.fps)
                except OSError:
                    pass

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        self.server.close()


def segments(folder):
    return sorted(p for p in folder.glob("stream0-*.mp4"))


def decodes_whole(path):
    """Every packet decodes without error, into as many frames as there are video packets."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stored = sum(1 for packet in container.demux(stream) if packet.size)
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    return stored > 0 and decoded == stored


def start_recording(tmp_path, key_file, camera, segment):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "anonymixer.cli", "protect", camera.url, "--key", str(key_file), "--model",
         "random:tiny", "--out", str(tmp_path / "out"), "--segment", segment],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def test_a_recording_killed_with_sigkill_leaves_every_closed_segment_whole(tmp_path, key_file):
    camera = MjpegCamera([None])
    process = start_recording(tmp_path, key_file, camera, "1")
    try:
        while len(segments(tmp_path / "out")) < 2 and process.poll() is None:   # no deadline: pytest's own
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
        process.communicate()
    finally:
        camera.stop()
    closed = segments(tmp_path / "out")
    assert len(closed) >= 2 and all(decodes_whole(path) for path in closed), closed
    assert all(PARTIAL_MARK not in path.name for path in closed)


def test_sigterm_commits_the_open_segment_and_exits_143(tmp_path, key_file):
    camera = MjpegCamera([None])
    process = start_recording(tmp_path, key_file, camera, "0")
    try:
        while not leftovers(tmp_path / "out") and process.poll() is None:   # the recording has begun
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate()
    finally:
        camera.stop()
    assert process.returncode == 143 and "Traceback" not in out + err, (out, err)
    assert "interrupted by SIGTERM" in out and "1 output(s) written" in out, out
    assert decodes_whole(tmp_path / "out" / "stream0.mp4") and leftovers(tmp_path) == []


def test_segments_hold_wall_clock_times_from_their_own_start(tmp_path, key_file, capsys):
    camera = MjpegCamera([None], fps=10.0)
    try:
        assert protect([camera.url], key_file, tmp_path / "out", "--segment", "0.5", "--max-frames", "8") == 0
    finally:
        camera.stop()
    printed = no_traceback(capsys).out
    files = segments(tmp_path / "out")
    assert len(files) >= 2 and f"{len(files)} output(s) written: 8 frame(s)" in printed
    for path in files:
        with av.open(str(path)) as container:
            times = [float(frame.time) for frame in container.decode(video=0)]
        assert times[0] == 0.0 and times == sorted(times) and times[-1] < 0.5


def test_a_stream_that_drops_and_returns_is_reconnected_and_the_gap_counted(tmp_path, key_file, capsys,
                                                                           monkeypatch):
    monkeypatch.setattr(live, "BACKOFF_FIRST_S", 0.2)
    camera = MjpegCamera([3, None], fps=10.0)
    try:
        code = protect([camera.url], key_file, tmp_path / "out", "--reconnect", "--segment", "0",
                       "--max-frames", "6")
    finally:
        camera.stop()
    printed = no_traceback(capsys).out
    assert code == 0, printed
    assert "6 frame(s)" in printed and "1 gap(s) in the source" in printed, printed
    assert decodes_whole(tmp_path / "out" / "stream0.mp4")


def test_without_reconnect_a_dropped_stream_ends_the_recording(tmp_path, key_file, capsys):
    camera = MjpegCamera([3, None], fps=10.0)
    try:
        assert protect([camera.url], key_file, tmp_path / "out", "--segment", "0", "--max-frames", "6") == 0
    finally:
        camera.stop()
    printed = no_traceback(capsys).out
    frames = int(re.search(r"written: (\d+) frame", printed).group(1))
    assert "gap" not in printed and 0 < frames <= 3, printed


def test_a_gstreamer_pipeline_without_gstreamer_is_one_line_naming_it(tmp_path, key_file, capsys, monkeypatch):
    monkeypatch.setattr("anonymixer.face.video.gstreamer_available", lambda: False)
    assert protect(["gst:videotestsrc ! appsink"], key_file, tmp_path / "out") == 1
    lines = failure_lines(no_traceback(capsys).out)
    assert len(lines) == 1 and "gst:videotestsrc" in lines[0] and "no GStreamer" in lines[0], lines


@pytest.mark.parametrize("has_gstreamer, says", [(True, "GStreamer: yes"), (False, "GStreamer: no")])
def test_doctor_says_whether_opencv_has_gstreamer(capsys, monkeypatch, has_gstreamer, says):
    from anonymixer.cli import main

    monkeypatch.setattr("anonymixer.face.video.gstreamer_available", lambda: has_gstreamer)
    assert main(["doctor"]) == 0
    assert says in capsys.readouterr().out
