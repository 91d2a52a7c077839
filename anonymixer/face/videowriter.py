"""Writes protected frames to a video file through FFmpeg (PyAV): the writer half of ``face/video.py``.

Every frame is encoded at its own time (``write(image, time_s)``: a variable frame rate stays
variable; a camera's frames keep their wall-clock spacing), H.264 (libx264) or VP9 in WebM, in the
input's container family (``video_output``). The input's audio and subtitle streams are copied
packet for packet (no re-encoding) from a second demuxer of the input, interleaved as the video
goes; a stream the container cannot hold is dropped and named. The file is written to a hidden
temporary next to the target, checked (every frame written is in it) and renamed over the target
(``anonymixer.atomic``); until then an earlier file there is untouched.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from .. import interrupts
from ..atomic import commit, discard, new_temporary
from ..errors import OutputError
from .video import COPIED_KINDS, CONTAINERS, ENCODERS, LIVE_PRESET, LIVE_TIME_BASE, VideoInfo, video_output

log = logging.getLogger("anonymixer.video")



def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


class VideoWriter:
    """One video file. ``info``: the input's (nominal rate, time base); ``copy_from``: a demuxer of
    the input whose audio and subtitle streams are copied (``None``: none, as with ``--no-audio``);
    ``live``: a camera recording (fast preset, a 1/90000 s time base for wall-clock times).

    After ``finish``: ``kept`` and ``dropped`` name the copied and the dropped streams
    (``"audio aac"``). Problems are ``OutputError`` naming the path (and the frame number)."""

    def __init__(self, path: Path, info: VideoInfo, *, copy_from: av.container.InputContainer | None = None,
                 live: bool = False) -> None:
        self.path = video_output(path)
        self.info = info
        self.live = live
        self.frames = 0
        self.kept: list[str] = []
        self.dropped: list[str] = []
        self.encoder = ""
        self._copy_from = copy_from
        self._output: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._temporary: Path | None = None
        self._copies: dict[int, av.stream.Stream] = {}
        self._packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None
        self._size = (0, 0)
        self._time_base = Fraction(1, 1)
        self._last_pts = -1
        self._stored = 0   # video packets handed to the muxer

    # --- writing -------------------------------------------------------------------------------

    def write(self, image: np.ndarray, time_s: float) -> None:
        """Append ``image`` ``(H, W, 3) uint8 BGR`` shown at ``time_s`` seconds (times must grow;
        a repeated time is moved one tick on)."""
        number = self.frames + 1
        # A signal (SIGTERM) between the encoder taking the frame and the count would leave a file whose
        # packets outnumber its frames, refused on commit; one while the first frame opens the file would
        # lose that frame (a recording stopped then wrote nothing): it waits for the frame to be counted.
        with interrupts.deferred():
            if self._output is None:
                self._open((image.shape[1], image.shape[0]))
            if (image.shape[1], image.shape[0]) != self._size:
                raise OutputError(f"{self.path}: frame {number} is {image.shape[1]}x{image.shape[0]}, the first was "
                                  f"{self._size[0]}x{self._size[1]}; nothing written")
            assert self._stream is not None
            frame = av.VideoFrame.from_ndarray(_even(image), format="bgr24")
            frame.pts = max(round(time_s / self._time_base), self._last_pts + 1)
            frame.time_base = self._time_base
            self._last_pts = frame.pts
            try:
                for packet in self._stream.encode(frame):
                    self._mux(packet)
                self._copy_until(time_s)   # never ahead of the video: a video cut short cuts its audio there
            except (av.FFmpegError, OSError, ValueError) as exc:
                raise self._failed(exc) from None
            self.frames = number

    def _failed(self, exc: BaseException) -> OutputError:
        # The encoder holds a few frames back: the frame that failed is the first one not stored.
        return OutputError(f"{self.path}: the video writer failed at frame {self._stored + 1} ({_reason(exc)}: "
                           f"disk full or a write error); nothing written")

    def _mux(self, packet: av.Packet) -> None:
        assert self._output is not None
        self._output.mux(packet)
        self._stored += packet.stream is self._stream

    def _open(self, size: tuple[int, int]) -> None:
        suffix = self.path.suffix.lower()
        container, family = CONTAINERS[suffix]
        self._temporary = new_temporary(self.path)
        self._size = size
        options = {"movflags": "+faststart"} if container in ("mp4", "mov") else {}
        try:
            self._output = av.open(str(self._temporary), "w", format=container, options=options)
            self._stream = self._add_video(family, container)
            if self._copy_from is not None:
                self._add_copies(self._copy_from)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.discard()
            raise OutputError(f"{self.path}: cannot write a video here ({_reason(exc)})") from None
        log.info("%s: %s in %s%s", self.path, self.encoder, container,
                 f", copying {', '.join(self.kept)}" if self.kept else "")

    def _add_video(self, family: str, container: str) -> av.video.stream.VideoStream:
        assert self._output is not None
        codec, options = ENCODERS[family]
        try:
            av.codec.Codec(codec, "w")
        except ValueError:
            raise ValueError(f"this FFmpeg (PyAV {av.__version__}) has no {codec} encoder: install the PyAV wheel "
                             f"from PyPI, or see docs/video.md, Licences") from None
        options = dict(options)
        if self.live and codec == "libx264":
            options["preset"] = LIVE_PRESET
        if container == "avi":          # AVI has no presentation times: no B-frames, a fixed rate
            options["bf"] = "0"
        rate = Fraction(self.info.fps).limit_denominator(1001)
        stream = cast(av.video.stream.VideoStream, self._output.add_stream(codec, rate=rate, options=options))
        stream.width, stream.height = (side + side % 2 for side in self._size)
        stream.pix_fmt = "yuv420p"
        if container == "avi":
            self._time_base = 1 / rate
        elif self.live or self.info.time_base is None:
            self._time_base = LIVE_TIME_BASE if self.live else 1 / rate
        else:
            self._time_base = self.info.time_base
        stream.codec_context.time_base = self._time_base
        stream.time_base = self._time_base
        self.encoder = codec
        return stream

    def _add_copies(self, source: av.container.InputContainer) -> None:
        assert self._output is not None
        supported = self._output.supported_codecs
        chosen = []
        for stream in source.streams:
            if stream.type not in COPIED_KINDS:
                continue
            name = f"{stream.type} {stream.codec_context.name}"
            if stream.codec_context.name not in supported:
                self.dropped.append(name)
                continue
            self._copies[stream.index] = self._output.add_stream_from_template(stream)
            self.kept.append(name)
            chosen.append(stream)
        if chosen:
            self._packets = source.demux(chosen)

    def _copy_until(self, limit: float) -> None:
        """Mux copied packets that start before ``limit`` seconds (all of them for ``inf``)."""
        while self._packets is not None:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    self._packets = None
                    return
            packet = self._pending
            stamp = packet.dts if packet.dts is not None else packet.pts
            if stamp is None or not packet.size:    # the demuxer's empty end-of-stream packets
                self._pending = None
                continue
            if float(stamp * packet.time_base) >= limit:
                return
            self._pending = None
            packet.stream = self._copies[packet.stream.index]
            self._mux(packet)

    # --- ending --------------------------------------------------------------------------------

    def finish(self, end_time: float | None = None) -> Path | None:
        """Flush the encoder, copy the rest of the audio and subtitles (up to ``end_time`` seconds:
        the end of the last frame written, when the video was cut short), close the file, check it
        and move it to ``path``. Returns ``path`` (``None`` if no frame was written)."""
        if self._output is None or self._temporary is None or self._stream is None:
            self._close_copy_source()
            return None
        try:
            for packet in self._stream.encode(None):
                self._mux(packet)
            self._copy_until(math.inf if end_time is None else end_time)
            self._output.close()
        except (av.FFmpegError, OSError, ValueError) as exc:
            error = self._failed(exc)
            self.discard()
            raise error from None
        self._output = None
        self._close_copy_source()
        stored = count_video_packets(self._temporary)
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
        if self._output is not None:
            try:
                self._output.close()
            except (av.FFmpegError, OSError, ValueError):
                pass
            self._output = None
        self._close_copy_source()
        if self._temporary is not None:
            discard(self._temporary)
            self._temporary = None

    def _close_copy_source(self) -> None:
        if self._copy_from is not None:
            self._copy_from.close()
            self._copy_from = None
        self._packets = self._pending = None


def _even(image: np.ndarray) -> np.ndarray:
    """4:2:0 video needs even sides: an odd side gets a copy of its last row or column."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def count_video_packets(path: Path) -> int:
    """How many video frames a file holds (its video packets, counted without decoding); 0 when
    it cannot be opened."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
    except (av.FFmpegError, OSError):
        return 0
