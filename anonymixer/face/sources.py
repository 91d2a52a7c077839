"""Where frames come from and where they go: photos, folders, video files, cameras and streams.

Inputs (``expand_sources``):
- an image file, or a video file (by suffix);
- a folder, searched recursively for both; outputs mirror the paths below the folder;
- a camera index (``0``, ``1``: a number that is not an existing file);
- a stream URL (anything with ``://``: rtsp, http, ...), read by OpenCV ``VideoCapture``.

Outputs keep the input's name under the output folder; a video is written with the source's frame
size and frame rate (``VideoSink``), atomically (a temporary file renamed on success), and checked
by decoding it again before the rename. Live sources are written as ``camera<N>.mp4`` or
``stream<N>.mp4``.

In folders, entries named like images or videos that cannot be read as files (broken or looping
symbolic links, pipes) are still returned, so that reading them reports them by name; folders
named like images are searched as folders, and said so (``Inputs.notes``).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import commit, discard, new_temporary
from ..errors import InputVideoError, OutputError
from .io import IMAGE_SUFFIXES, file_problem

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
# Output codec by container; all are in OpenCV's FFmpeg build. Anything else is written as .avi.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
DEFAULT_FPS = 25.0  # for cameras and files that do not report a frame rate


@dataclass(frozen=True)
class Source:
    """One input. ``kind``: image, video, camera or stream. ``location``: a path, a camera
    index or a URL. ``output``: the output path relative to the output folder."""

    kind: str
    location: str | int
    output: Path

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")

    def __str__(self) -> str:
        return f"camera {self.location}" if self.kind == "camera" else str(self.location)


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


@dataclass
class Inputs:
    """``sources`` in order; ``notes``: what was searched in an unexpected way (a folder named
    like an image); ``empty``: command-line folders in which nothing was found (each a failure)."""

    sources: list[Source]
    notes: list[str]
    empty: list[str]


def expand_sources(inputs: Sequence[str]) -> Inputs:
    """Sources for command-line inputs, in order; folders sorted so that runs are repeatable.

    A path that does not exist is still returned (as an image or video), so that reading it
    reports it by name and the rest of the batch goes on.
    """
    found = Inputs([], [], [])
    streams = 0
    for item in inputs:
        path = Path(item)
        if "://" in item:
            found.sources.append(Source("stream", item, Path(f"stream{streams}.mp4")))
            streams += 1
        elif re.fullmatch(r"\d+", item) and not path.exists():
            found.sources.append(Source("camera", int(item), Path(f"camera{item}.mp4")))
        elif path.is_dir():
            before = len(found.sources)
            _search_folder(path, found)
            if len(found.sources) == before:
                named = " (although named like an image or video)" if path.suffix.lower() in MEDIA_SUFFIXES else ""
                found.empty.append(f"{path}: a folder{named} with no images or videos in it")
        else:
            found.sources.append(Source(_kind(path), item, Path(path.name)))
    return found


def _search_folder(folder: Path, found: Inputs) -> None:
    for entry in sorted(folder.rglob("*")):
        if entry.suffix.lower() not in MEDIA_SUFFIXES:
            continue
        if entry.is_dir():  # rglob searches it too
            found.notes.append(f"{entry}: a folder named like an image or video; searched as a folder")
        else:  # files, and broken links or pipes, which reading reports by name
            found.sources.append(Source(_kind(entry), str(entry), entry.relative_to(folder)))


@dataclass
class VideoInfo:
    """``fps`` (frames per second), ``size`` (width, height), ``frames`` (0 when unknown or live)."""

    fps: float
    size: tuple[int, int]
    frames: int


def open_capture(source: Source) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video, camera or stream; ``InputVideoError`` names it when it cannot be read."""
    if source.kind == "video":
        problem = file_problem(Path(str(source.location)))
        if problem:
            raise InputVideoError(f"{source}: {problem}")
    capture = cv2.VideoCapture(source.location)
    if not capture.isOpened():
        capture.release()
        what = {"video": "not a readable video (corrupt, truncated or unsupported format)",
                "camera": "cannot open this camera (no such device, or it is in use)",
                "stream": "cannot open this stream (check the URL and the network)"}[source.kind]
        raise InputVideoError(f"{source}: {what}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = DEFAULT_FPS
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = 0 if source.live else max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    return capture, VideoInfo(fps, size, frames)


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """Frames as ``(H, W, 3) uint8 BGR`` until the source ends (or a read fails); never drops one."""
    while True:
        frame = _read_bgr(capture)
        if frame is None:
            return
        yield frame


def video_output(path: Path) -> Path:
    """Where a video meant for ``path`` is written: ``path``, or ``.avi`` for a suffix not in ``FOURCC``."""
    return path if path.suffix.lower() in FOURCC else path.with_suffix(".avi")


def count_frames(path: Path) -> int:
    """How many frames a video file decodes to (each frame read, not the header's count)."""
    capture = cv2.VideoCapture(str(path))
    frames = 0
    try:
        while capture.isOpened() and capture.grab():
            frames += 1
    finally:
        capture.release()
    return frames


def _read_bgr(capture: cv2.VideoCapture) -> np.ndarray | None:
    ok, frame = capture.read()
    if not ok or frame is None:
        return None
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


class LatestFrames:
    """A live source's frames, newest first: stale frames are dropped rather than queued.

    A reader thread takes every frame the camera or stream delivers (so its own buffer never
    fills) and keeps only the newest; iterating yields that one, so when the pipeline is slower
    than the source, latency stays one frame instead of growing. ``dropped`` counts the frames
    replaced before anyone took them. ``close()`` stops the reader (call it before releasing the
    capture); iteration ends when the source does.
    """

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self.capture = capture
        self.dropped = 0
        self._frame: np.ndarray | None = None
        self._ended = False
        self._stop = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True, name="anonymixer-camera")
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            frame = _read_bgr(self.capture)
            with self._ready:
                if frame is None:
                    self._ended = True
                else:
                    self.dropped += self._frame is not None
                    self._frame = frame
                self._ready.notify()
            if frame is None:
                return

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._frame is not None or self._ended)
                frame, self._frame = self._frame, None
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5.0)   # a stalled stream may hold read(); the thread is a daemon


class VideoSink:
    """Writes frames to a video file with a fixed frame rate; the size is set by the first frame.

    The container follows the path's suffix (``video_output``). Frames go to a temporary file in the
    target folder; ``finish`` checks that the file decodes to every frame written and renames it
    over ``path``; ``discard`` removes it. An earlier file at ``path`` is left as it was until
    ``finish`` succeeds. Write problems are ``OutputError`` naming the path and the frame number.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = video_output(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._temporary: Path | None = None
        self._size = (0, 0)
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append ``frame`` ``(H, W, 3) uint8 BGR``."""
        number = self.frames + 1
        if self._writer is None:
            self._open((frame.shape[1], frame.shape[0]))
        if (frame.shape[1], frame.shape[0]) != self._size or self._writer is None:
            raise OutputError(f"{self.path}: frame {number} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                              f"{self._size[0]}x{self._size[1]}; nothing written")
        try:
            self._writer.write(frame)
        except cv2.error as exc:
            raise OutputError(f"{self.path}: the video writer failed at frame {number} "
                              f"({str(exc).strip().splitlines()[-1]}); nothing written") from None
        self.frames = number

    def _open(self, size: tuple[int, int]) -> None:
        fourcc = FOURCC[self.path.suffix.lower()]
        self._temporary = new_temporary(self.path)
        self._size = size
        self._writer = cv2.VideoWriter(str(self._temporary), cv2.VideoWriter.fourcc(*fourcc), self.fps, size)
        if not self._writer.isOpened():
            self.discard()
            raise OutputError(f"{self.path}: cannot write a video here (codec {fourcc} unavailable)")

    def finish(self) -> Path | None:
        """Close the file, check it and move it to ``path``; return ``path`` (``None`` if no frame
        was written). ``OutputError`` (and nothing at ``path`` changed) if it lacks frames."""
        if self._writer is None or self._temporary is None:
            return None
        self._writer.release()
        self._writer = None
        stored = count_frames(self._temporary)
        if stored != self.frames:
            self.discard()
            raise OutputError(f"{self.path}: the video writer stored {stored} of {self.frames} frames (it failed "
                              f"at frame {stored + 1}: disk full or a write error); nothing written")
        temporary, self._temporary = self._temporary, None
        try:
            commit(temporary, self.path)
        except OutputError:
            discard(temporary)
            raise
        return self.path

    def discard(self) -> None:
        """Close and remove the temporary file; ``path`` is left as it was."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._temporary is not None:
            discard(self._temporary)
            self._temporary = None

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.discard()
