"""Video in and out: the one reader/writer pair. Files go through FFmpeg (PyAV); cameras, streams
and GStreamer pipelines through OpenCV, as does a file that PyAV cannot open (said in the log).

    reader = VideoReader(source)                    # InputVideoError names the source
    for image, time_s in reader.frames(): ...       # (H, W, 3) uint8 BGR, upright; seconds
    writer = VideoWriter(Path("out/clip.mp4"), reader.info, copy_from=reader)   # audio, subtitles copied
    writer.write(image, time_s); writer.finish()   # atomic: a temporary file renamed when whole

A file is decoded with its stream's own timestamps (a variable frame rate stays variable) and
turned upright by its display matrix (the phone's rotation tag), whatever the decoder would do by
itself, so the detector sees faces the right way up. Output: H.264 (libx264) in the input's
container family (``.mp4``, ``.m4v``, ``.mov``, ``.mkv``, ``.avi``), VP9 in ``.webm`` (WebM allows
no H.264), and ``.mkv`` for containers that cannot hold H.264 (``.wmv``, ``.mpg``); every frame at
its input time; audio and subtitle packets copied unchanged (no re-encoding), unless ``--no-audio``.
Licence: PyAV is BSD; its wheels bundle FFmpeg (LGPL) with libx264 and libx265 (GPL-2.0-or-later),
and H.264 is written with libx264: see docs/video.md before redistributing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import cv2
import numpy as np

from ..errors import InputVideoError
from .io import file_problem
from .sources import Source

log = logging.getLogger("anonymixer.video")

DEFAULT_FPS = 25.0  # for cameras and files that do not report a frame rate
# Output container and video encoder by input suffix. H.264 where the container allows it
# (libx264, CRF 23: FFmpeg's default quality); WebM allows only VP8/VP9/AV1 (VP9 measured best:
# docs/video.md); containers that cannot hold H.264 (ASF/WMV, MPEG-PS) become Matroska.
CONTAINERS = {".mp4": ("mp4", "h264"), ".m4v": ("mp4", "h264"), ".mov": ("mov", "h264"),
              ".mkv": ("matroska", "h264"), ".avi": ("avi", "h264"), ".webm": ("webm", "vp9")}
FALLBACK_SUFFIX = ".mkv"
ENCODERS = {"h264": ("libx264", {"crf": "23", "preset": "medium"}),
            "vp9": ("libvpx-vp9", {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"})}
LIVE_PRESET = "veryfast"   # a camera must be encoded as fast as it delivers frames
LIVE_TIME_BASE = Fraction(1, 90000)
COPIED_KINDS = ("audio", "subtitle")


def video_output(path: Path) -> Path:
    """Where a video meant for ``path`` is written: ``path``, or ``.mkv`` for a container that cannot
    hold H.264 (``.wmv``, ``.mpg``, ...)."""
    return path if path.suffix.lower() in CONTAINERS else path.with_suffix(FALLBACK_SUFFIX)


@dataclass
class VideoInfo:
    """``fps`` (nominal frames per second), ``size`` (width, height, upright), ``frames`` (the header's
    count; 0 when unknown or live), ``backend`` (``pyav`` or ``opencv``), ``time_base`` (of the
    input's timestamps; ``None``: wall clock or frame index), ``rotation`` (degrees undone, counter-
    clockwise), ``copyable``: the input's audio and subtitle streams, ``"audio aac"``..."""

    fps: float
    size: tuple[int, int]
    frames: int
    backend: str
    time_base: Fraction | None = None
    rotation: int = 0
    copyable: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VideoOptions:
    """How videos are written: ``audio`` (copy audio and subtitle streams; ``--no-audio`` drops
    them), ``segment_s`` (a live recording's segment length; ``None``: one file), ``reconnect``
    (reopen a camera or stream that stops delivering, ``--reconnect``)."""

    audio: bool = True
    segment_s: float | None = 60.0
    reconnect: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> VideoOptions:
        """From a command's options (``--no-audio``, ``--segment``, ``--reconnect``; absent: defaults)."""
        segment = getattr(settings, "segment", None)
        return cls(audio=not getattr(settings, "no_audio", False),
                   segment_s=cls.segment_s if segment is None else segment or None,
                   reconnect=bool(getattr(settings, "reconnect", False)))


def upright(image: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """``image`` as displayed, given FFmpeg's display matrix (9 int32, 16.16 fixed point; it maps a
    decoded pixel (x, y) to the displayed (x', y') = (a x + c y, b x + d y), up to a shift). Right
    angles and mirrors only; anything else (never seen in camera files) is left as it is."""
    if matrix is None:
        return image
    a, b, c, d = (int(np.sign(round(float(v) / 65536.0))) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    if a and d and not b and not c:
        out = image[:, ::-1] if a < 0 else image
        return np.ascontiguousarray(out[::-1] if d < 0 else out)
    if b and c and not a and not d:
        out = image.transpose(1, 0, 2)          # out[x, y] = image[y, x]
        out = out[::-1] if b < 0 else out
        return np.ascontiguousarray(out[:, ::-1] if c < 0 else out)
    return image


def _display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's display matrix (the file's rotation tag, which FFmpeg copies to every frame), or None.
    Read once per file: PyAV's ``side_data`` ties the frame in a reference cycle, so a frame whose side data
    was read is freed only by Python's cyclic collector, which counts objects, not bytes; read on every
    frame, hundreds of decoded frames waited for it (a 640x480 file: +180 MB resident in 3,000 frames)."""
    data: Any = frame.side_data.get("DISPLAYMATRIX")
    return None if data is None else np.frombuffer(bytes(data), np.int32)


class VideoReader:
    """Frames of one video file, camera, stream or GStreamer pipeline (``gst:...``)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._capture: cv2.VideoCapture | None = None
        if source.kind == "video":
            problem = file_problem(Path(str(source.location)))
            if problem:
                raise InputVideoError(f"{source}: {problem}")
            try:
                self.info = self._open_pyav(str(source.location))
                log.info("%s: read with PyAV (FFmpeg %s)", source, av.ffmpeg_version_info)
                return
            except (av.FFmpegError, IndexError, ValueError) as exc:
                log.info("%s: PyAV cannot open it (%s); trying OpenCV", source, exc)
        self.info = self._open_opencv(source)
        log.info("%s: read with OpenCV (%s)", source, self._capture.getBackendName() if self._capture else "?")

    def _open_pyav(self, path: str) -> VideoInfo:
        container = av.open(path)
        # The picture, not a cover image or thumbnail that some files carry as a second video stream.
        moving = [s for s in container.streams.video
                  if not s.disposition & (av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails)]
        if not moving:
            container.close()
            raise ValueError("no video stream")
        stream = self._stream = moving[0]
        stream.thread_type = "AUTO"
        self._container = container
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate and 0 < float(rate) <= 1000 else DEFAULT_FPS
        width, height = stream.codec_context.width, stream.codec_context.height
        copyable = [f"{s.type} {s.codec_context.name}" for s in container.streams if s.type in COPIED_KINDS]
        return VideoInfo(fps, (width, height), max(stream.frames, 0), "pyav", stream.time_base, 0, copyable)

    def _open_opencv(self, source: Source) -> VideoInfo:
        capture = reopen_capture(source)
        if capture is None:
            what = {"video": "not a readable video (corrupt, truncated or unsupported format)",
                    "camera": "cannot open this camera (no such device, or it is in use)",
                    "stream": "cannot open this stream (check the URL and the network)"}[source.kind]
            raise InputVideoError(f"{source}: {what}")
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = DEFAULT_FPS
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        frames = 0 if source.live else max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        return VideoInfo(fps, size, frames, "opencv")

    @property
    def capture(self) -> cv2.VideoCapture | None:
        """The OpenCV capture of a camera or stream (``LatestFrames`` reads it); ``None`` for PyAV."""
        return self._capture

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Every frame of a file, ``((H, W, 3) uint8 BGR upright, its time in s)``, until it ends or
        cannot be decoded further (a truncated file ends early; the caller compares counts). Times
        are the stream's own; a frame without one (or from OpenCV) gets index / fps."""
        if self._container is None:
            assert self._capture is not None
            index = 0
            while (image := read_bgr(self._capture)) is not None:
                yield image, index / self.info.fps
                index += 1
            return
        stream = self._stream
        assert stream is not None
        last, first = -math.inf, True
        matrix: np.ndarray | None = None
        try:
            for frame in self._container.decode(stream):
                time_s = frame.time if frame.time is not None else last + 1.0 / self.info.fps
                if time_s <= last:   # a repeated or backwards timestamp: keep the order, nudge the time
                    time_s = last + 1e-3
                last = time_s
                if first:   # the display matrix, read from the first frame only: see _display_matrix
                    matrix = _display_matrix(frame)
                image = upright(frame.to_ndarray(format="bgr24"), matrix)
                if first:   # the size as shown, once the display matrix is known
                    self.info.size, self.info.rotation = (image.shape[1], image.shape[0]), int(frame.rotation) % 360
                    first = False
                yield image, time_s
        except av.FFmpegError as exc:
            log.info("%s: decoding stopped (%s)", self.source, exc)

    def copy_streams(self) -> av.container.InputContainer | None:
        """A second demuxer of the file for the writer to copy audio and subtitles from (``None``
        for OpenCV sources: nothing to copy)."""
        if self._container is None:
            return None
        return av.open(str(self.source.location))

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def reopen_capture(source: Source) -> cv2.VideoCapture | None:
    """An OpenCV capture of ``source`` (a ``gst:`` pipeline through GStreamer), or ``None`` when it
    cannot be opened now. ``InputVideoError`` when this OpenCV cannot take a GStreamer pipeline."""
    location = source.location
    if isinstance(location, str) and location.startswith("gst:"):
        if not gstreamer_available():
            raise InputVideoError(f"{source}: this OpenCV has no GStreamer (see `anonymixer doctor`); use "
                                  f"JetPack's OpenCV or another build with GStreamer")
        capture = cv2.VideoCapture(location[4:], cv2.CAP_GSTREAMER)
    else:
        capture = cv2.VideoCapture(location)
    if not capture.isOpened():
        capture.release()
        return None
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)   # OpenCV's FFmpeg backend turns files upright
    return capture


class Capture(Protocol):
    """What is read from a camera or stream: OpenCV's ``VideoCapture``, or ``live.Reconnecting``."""

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


def read_bgr(capture: Capture) -> np.ndarray | None:
    """One OpenCV frame as ``(H, W, 3) uint8 BGR``; ``None`` when the source ended or a read failed."""
    ok, frame = capture.read()
    if not ok or frame is None:
        return None
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (JetPack's is; the PyPI wheels are not)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1].upper()
    return False
