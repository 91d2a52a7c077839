"""Cameras and streams that run for months: newest frames with their capture times, reconnection
with a bounded backoff, and recordings in segments committed one by one.

- ``LatestFrames``: a reader thread keeps only the newest frame (latency stays one frame when the
  pipeline is slower than the camera) and stamps it with the time it was captured.
- ``Reconnecting``: a capture that, when a read fails, reopens its source after 0.5, 1, 2 ... 30 s
  (then every 30 s) until it delivers again or the run stops; ``gaps`` lists the seconds lost.
- ``SegmentedRecording``: frames go to ``NAME-<UTC start>.mp4`` files of ``seconds`` each, each
  written atomically when it closes (``VideoWriter``), with the frames' wall-clock spacing, so
  it plays at real speed; a crash or power cut loses only the segment being written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .video import Capture, VideoInfo, read_bgr
from .videowriter import VideoWriter

log = logging.getLogger("anonymixer.video")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0


class LatestFrames:
    """A live source's frames, newest first: ``(frame (H, W, 3) uint8 BGR, capture time in s of
    ``time.monotonic``)``; stale frames are dropped rather than queued.

    A reader thread takes every frame the capture delivers (so its own buffer never fills) and
    keeps only the newest; ``dropped`` counts the frames replaced before anyone took them.
    ``close()`` stops the reader (call it before releasing the capture); iteration ends when the
    source does.
    """

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.dropped = 0
        self._item: tuple[np.ndarray, float] | None = None
        self._ended = False
        self._stop = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True, name="anonymixer-camera")
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            frame = read_bgr(self.capture)
            captured = time.monotonic()
            with self._ready:
                if frame is None:
                    self._ended = True
                else:
                    self.dropped += self._item is not None
                    self._item = (frame, captured)
                self._ready.notify()
            if frame is None:
                return

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._item is not None or self._ended)
                item, self._item = self._item, None
            if item is None:
                return
            yield item

    def close(self) -> None:
        self._stop = True
        stop = getattr(self.capture, "stop", None)
        if stop is not None:
            stop()                        # a reconnecting capture may be waiting out its backoff
        self._thread.join(timeout=5.0)    # a stalled stream may hold read(); the thread is a daemon


class Reconnecting:
    """A capture (``read``/``release``, as OpenCV's) that reopens its source with ``reopen`` when a
    read fails, waiting ``BACKOFF_FIRST_S`` doubling up to ``BACKOFF_MAX_S`` between tries, until a
    frame comes or ``stop()``. ``gaps``: seconds from the failed read to the next frame, one per gap."""

    def __init__(self, capture: Capture | None, reopen: Callable[[], Capture | None], name: str,
                 backoff_first_s: float | None = None, backoff_max_s: float | None = None) -> None:
        self.capture: Capture | None = capture
        self.gaps: list[float] = []
        self._reopen, self._name = reopen, name
        self._first = BACKOFF_FIRST_S if backoff_first_s is None else backoff_first_s
        self._max = BACKOFF_MAX_S if backoff_max_s is None else backoff_max_s
        self._stopping = threading.Event()

    def read(self) -> tuple[bool, Any]:
        if self.capture is not None:
            ok, frame = self.capture.read()
            if ok and frame is not None:
                return ok, frame
        lost, delay = time.monotonic(), self._first
        log.warning("%s: the source stopped delivering frames; reconnecting", self._name)
        while not self._stopping.is_set():
            self.release()
            if self._stopping.wait(delay):
                break
            self.capture = self._reopen()
            if self.capture is not None:
                ok, frame = self.capture.read()
                if ok and frame is not None:
                    self.gaps.append(time.monotonic() - lost)
                    log.warning("%s: reconnected after %.1f s", self._name, self.gaps[-1])
                    return ok, frame
            delay = min(2.0 * delay, self._max)
        return False, None

    def stop(self) -> None:
        self._stopping.set()

    def release(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class SegmentedRecording:
    """A live recording in files of ``seconds`` each (``None``: one file, ``path`` itself), named
    ``<path stem>-<UTC start, YYYYmmddTHHMMSSZ><suffix>``. ``write(image, time_s)`` with the
    frame's capture time (``time.monotonic`` seconds); a segment holds the frames of its span at
    their own times from its first. ``committed``: the files closed so far, in order."""

    def __init__(self, path: Path, info: VideoInfo, seconds: float | None) -> None:
        self.path = path
        self.info = info
        self.seconds = seconds
        self.committed: list[Path] = []
        self.frames = 0
        self._writer: VideoWriter | None = None
        self._start = 0.0

    def write(self, image: np.ndarray, time_s: float) -> None:
        if self._writer is not None and self.seconds and time_s - self._start >= self.seconds:
            self._close()
        if self._writer is None:
            self._start = time_s
            self._writer = VideoWriter(self._segment_path(time_s), self.info, live=True)
        self._writer.write(image, time_s - self._start)
        self.frames += 1

    def _segment_path(self, time_s: float) -> Path:
        if not self.seconds:
            return self.path
        wall = time.time() - (time.monotonic() - time_s)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))
        path = self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}")
        number = 1
        while path.exists() or path in self.committed:   # a restart within the same second
            number += 1
            path = self.path.with_name(f"{self.path.stem}-{stamp}-{number}{self.path.suffix}")
        return path

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            written = writer.finish()
            if written is not None:
                self.committed.append(written)

    def finish(self, end_time: float | None = None) -> Path | None:
        """Commit the segment being written; the last file committed (``None``: none)."""
        self._close()
        return self.committed[-1] if self.committed else None

    def discard(self) -> None:
        """Remove the segment being written; committed ones stay."""
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
