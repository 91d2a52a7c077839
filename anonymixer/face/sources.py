"""Where frames come from and where they go: photos, folders, video files, cameras and streams.

Inputs (``expand_sources``):
- an image file, or a video file (by suffix);
- a folder, searched recursively for both; outputs mirror the paths below the folder;
- a camera index (``0``, ``1``: a number that is not an existing file);
- a stream URL (anything with ``://``: rtsp, http, ...), read by OpenCV ``VideoCapture``.

Outputs keep the input's name under the output folder; a video is written with the source's frame
size and frame rate (``VideoSink``). Live sources are written as ``camera<N>.mp4`` or
``stream<N>.mp4``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputVideoError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
# Output codec by container; all are in OpenCV's FFmpeg build. Anything else is written as .avi.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
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


def expand_sources(inputs: Sequence[str]) -> list[Source]:
    """Sources for command-line inputs, in order; folders sorted so that runs are repeatable.

    A path that does not exist is still returned (as an image or video), so that reading it
    reports it by name and the rest of the batch goes on.
    """
    sources: list[Source] = []
    streams = 0
    for item in inputs:
        path = Path(item)
        if "://" in item:
            sources.append(Source("stream", item, Path(f"stream{streams}.mp4")))
            streams += 1
        elif re.fullmatch(r"\d+", item) and not path.exists():
            sources.append(Source("camera", int(item), Path(f"camera{item}.mp4")))
        elif path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file() and
                                p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES):
                sources.append(Source(_kind(found), str(found), found.relative_to(path)))
        else:
            sources.append(Source(_kind(path), item, Path(path.name)))
    return sources


@dataclass
class VideoInfo:
    """``fps`` (frames per second), ``size`` (width, height), ``frames`` (0 when unknown or live)."""

    fps: float
    size: tuple[int, int]
    frames: int


def open_capture(source: Source) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video, camera or stream; ``InputVideoError`` names it when it cannot be read."""
    if source.kind == "video":
        path = Path(str(source.location))
        if not path.is_file():
            raise InputVideoError(f"{source}: no such file")
        if path.stat().st_size == 0:
            raise InputVideoError(f"{source}: empty file (0 bytes)")
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
    """Frames as ``(H, W, 3) uint8 BGR`` until the source ends (or a read fails)."""
    while True:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        yield frame


class VideoSink:
    """Writes frames to a video file with a fixed frame rate; the size is set by the first frame.

    The container follows the path's suffix (``FOURCC``); an unknown suffix is replaced by
    ``.avi`` (Motion JPEG), which every OpenCV build can write.
    """

    def __init__(self, path: Path, fps: float) -> None:
        suffix = path.suffix.lower()
        self.path = path if suffix in FOURCC else path.with_suffix(".avi")
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = (frame.shape[1], frame.shape[0])
            fourcc = cv2.VideoWriter.fourcc(*FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
            if not self._writer.isOpened():
                self._writer = None
                raise InputVideoError(f"{self.path}: cannot write a video here (codec "
                                      f"{FOURCC[self.path.suffix.lower()]} unavailable, or folder not writable)")
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
