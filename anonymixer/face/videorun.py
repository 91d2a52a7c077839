"""One video file, camera or stream through the pipeline: frames in (``VideoReader``), protected
frames out at their own times (``VideoWriter``, or ``SegmentedRecording`` for a live source), and
what the run report says about it. The step ``face.app.protect_source`` takes for a video.

A file gives every frame with its time in the video; a live source its newest frame with the time
it was captured (``LatestFrames``), reopened when it drops with ``--reconnect`` (``Reconnecting``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import interrupts
from ..errors import AnonymixerError, OutputError, Terminated, printable
from .live import LatestFrames, Reconnecting, SegmentedRecording
from .pipeline import FaceProtector, FrameResult
from .preview import Preview
from .runreport import RunReport
from .sources import Source
from .track import LandmarkSmoother
from .video import Capture, VideoOptions, VideoReader, reopen_capture
from .videowriter import VideoWriter


MAX_LINES_PER_SOURCE = 5  # a video that fails on every frame should not flood the terminal


@dataclass
class _VideoRun:
    """Per-video counts: frames read, faces protected, failure lines (capped); frames blanked, without
    a face, with faces found only turned (``search.find_faces``), with a face held by its track; the
    times of the frames in flight (``pending``) and of the last one written (``last_time``)."""

    frames: int = 0
    faces: int = 0
    lines: int = 0
    blanked: int = 0
    no_face: int = 0
    turned: int = 0
    held: int = 0
    failed: bool = False
    stopped_early: bool = False
    pending: deque[float] = field(default_factory=deque)
    last_time: float = 0.0


Sink = VideoWriter | SegmentedRecording


def _open_sink(source: Source, target: Path, reader: VideoReader, options: VideoOptions) -> Sink:
    """A file's writer (audio and subtitles copied unless ``--no-audio``), or a live source's
    recording in segments."""
    if source.live:
        return SegmentedRecording(target, reader.info, options.segment_s)
    return VideoWriter(target, reader.info, copy_from=reader.copy_streams() if options.audio else None)


def protect_video(face_protector: FaceProtector, source: Source, target: Path | None, report: RunReport,
                   preview: Preview, max_frames: int | None, inflight: int = 1,
                   options: VideoOptions = VideoOptions()) -> None:
    try:
        reader = VideoReader(source)
    except AnonymixerError as exc:
        report.fail(str(exc))
        return
    if source.kind == "video" and reader.info.backend != "pyav":
        report.notes.append(f"{source}: read with OpenCV (FFmpeg through PyAV cannot open it): frame times are "
                            f"frame number / rate, and no audio is copied")
    run = _VideoRun()
    sink = None
    stopped_by_ctrl_c = False
    bar = tqdm(total=reader.info.frames or None, unit="frame", desc=printable(str(source)), disable=None)
    try:
        sink = _open_sink(source, target, reader, options) if target is not None else None
        _video_loop(face_protector, source, reader, sink, run, report, preview, max_frames, bar, inflight, options)
    except KeyboardInterrupt as exc:
        if not source.live:
            _end_video(source, sink, run, report, keep=False)
            report.failed_inputs += int(run.failed)
            raise
        # A recording stops cleanly: its open segment is committed below and reported; after SIGTERM
        # (``interrupted``) protect_sources then ends the run.
        report.notes.append(f"{source}: stopped after {run.frames} frame(s)")
        run.stopped_early = True
        if isinstance(exc, Terminated):
            report.interrupted = exc.signal_number
        else:
            stopped_by_ctrl_c = True
    except OutputError as exc:  # the output cannot be written: the rest of the video is not read
        if sink is not None:
            sink.discard()
        report.failures.append(str(exc))
        run.failed = run.stopped_early = True
    finally:
        bar.close()
        reader.close()
    if run.lines > MAX_LINES_PER_SOURCE:
        report.failures.append(f"{source}: ... and {run.lines - MAX_LINES_PER_SOURCE} more masked face(s) or frame(s)")
    _check_video(source, reader.info.frames, face_protector.no_face, run, report)
    _end_video(source, sink, run, report, keep=True, frame_s=1.0 / reader.info.fps)
    report.failed_inputs += int(run.failed)
    if stopped_by_ctrl_c:   # the recording is committed and the run goes on: the next signal stops it again
        interrupts.handled()


def _video_loop(face_protector: FaceProtector, source: Source, reader: VideoReader, sink: Sink | None,
                run: _VideoRun, report: RunReport, preview: Preview, max_frames: int | None, bar: tqdm,
                inflight: int, options: VideoOptions) -> None:
    """``inflight`` frames at once (``FaceProtector.process_many``), written in order, each at its
    time: a file's own timestamps, a live source's capture times (its newest frame only,
    ``LatestFrames``; reopened when it drops with ``--reconnect``). The smoother sees the same times."""
    smoother = LandmarkSmoother()
    started = time.perf_counter()
    live = None
    if source.live:
        capture: Capture | None = reader.capture
        assert capture is not None   # a live source is read by OpenCV
        if options.reconnect:
            capture = Reconnecting(capture, lambda: reopen_capture(source), str(source))
        live = LatestFrames(capture)
    frames: Iterator[tuple[np.ndarray, float]] = iter(live) if live is not None else reader.frames()

    def items() -> Iterator[tuple[np.ndarray, float | None]]:
        for image, time_s in frames:
            run.pending.append(time_s)
            yield image, time_s

    try:
        _consume(face_protector.process_many(items(), inflight, smoother, live=source.live), source, sink, run, report, preview,
                 max_frames, bar, started)
    finally:
        if live is not None:
            live.close()
            if live.dropped:
                report.notes.append(f"{source}: {live.dropped} stale frame(s) dropped to keep latency low")
            gaps = getattr(live.capture, "gaps", [])
            if gaps:
                report.notes.append(f"{source}: {len(gaps)} gap(s) in the source, {sum(gaps):.1f} s lost in all; "
                                    f"reconnected each time (--reconnect)")
            if isinstance(live.capture, Reconnecting):
                live.capture.release()


def _consume(results: Iterator[FrameResult], source: Source, sink: Sink | None, run: _VideoRun,
             report: RunReport, preview: Preview, max_frames: int | None, bar: tqdm, started: float) -> None:
    for result in results:
        report.add_frame(result)
        run.frames += 1
        run.faces += result.protected
        run.blanked += int(result.blanked)
        run.last_time = run.pending.popleft()
        run.no_face += int(result.no_face)
        run.turned += int(result.turn != 0)
        run.held += int(result.held > 0)
        for line in result.failures:
            run.failed = True
            run.lines += 1
            if run.lines <= MAX_LINES_PER_SOURCE:
                report.failures.append(f"{source} frame {run.frames}: {line}")
        if sink is not None:
            sink.write(result.frame, run.last_time)
        elapsed = time.perf_counter() - started
        bar.update(1)
        bar.set_postfix(faces=run.faces, faces_per_s=f"{run.faces / max(elapsed, 1e-9):.1f}")
        if not preview.show(result.frame, result, run.frames / max(elapsed, 1e-9)):
            report.notes.append(f"{source}: stopped from the preview window after {run.frames} frame(s)")
            run.stopped_early = True
            return
        if max_frames is not None and run.frames >= max_frames:
            run.stopped_early = True
            return


def _check_video(source: Source, announced: int, no_face: str, run: _VideoRun, report: RunReport) -> None:
    """Failures a video has as a whole: no frame, fewer frames than its header says, all blanked."""
    if run.frames == 0:
        report.failures.append(f"{source}: no frame could be decoded (corrupt, truncated or unsupported video)")
        run.failed = True
        return
    if not source.live and not run.stopped_early and 0 < run.frames < announced:
        report.failures.append(f"{source}: only {run.frames} of the {announced} frames its header announces could "
                               f"be decoded (truncated or corrupt video); the output has {run.frames} frame(s)")
        run.failed = True
    if run.blanked == run.frames and not run.failed:
        report.failures.append(f"{source}: no face found in any of its {run.frames} frame(s); the whole video is "
                               f"masked (--no-face {no_face})")
        run.failed = True
    elif run.blanked:
        report.notes.append(f"{source}: no face in {run.blanked} of {run.frames} frame(s); those are masked")
    elif run.no_face:
        report.notes.append(f"{source}: no face found in {run.no_face} of {run.frames} frame(s); those are written "
                            f"unchanged (--no-face {no_face})")
    if run.turned:
        report.notes.append(f"{source}: face(s) found only with the frame turned (sideways or upside down) in "
                            f"{run.turned} of {run.frames} frame(s); protected, written as stored")
    if run.held:
        report.notes.append(f"{source}: the detector lost a tracked face in {run.held} frame(s); protected where "
                            f"its track held it")


def _end_video(source: Source, sink: Sink | None, run: _VideoRun, report: RunReport, keep: bool,
               frame_s: float = 0.0) -> None:
    """Finish (``keep``) or discard the video's output, and say which (and which streams were copied).
    A video cut short keeps its audio up to the end of its last frame (``frame_s`` long)."""
    if sink is None:
        return
    if not keep or run.frames == 0:
        if sink.frames:
            report.notes.append(f"{source}: stopped at frame {run.frames}; no output written for it"
                                + (" (the earlier file there is unchanged)" if sink.path.exists() else ""))
        sink.discard()
        _report_segments(sink, report)
        return
    try:
        replaces = sink.path.is_file()
        written = sink.finish(run.last_time + frame_s if run.stopped_early else None)
    except OutputError as exc:
        report.failures.append(str(exc))
        run.failed = True
        _report_segments(sink, report)
        return
    if isinstance(sink, SegmentedRecording):
        _report_segments(sink, report)
    elif written is not None:
        report.written.append(written)
        report.replaced += replaces
        _report_streams(source, sink, report)


def _report_segments(sink: Sink, report: RunReport) -> None:
    if isinstance(sink, SegmentedRecording):
        report.written.extend(path for path in sink.committed if path not in report.written)


def _report_streams(source: Source, sink: VideoWriter, report: RunReport) -> None:
    """Notes on what else the output holds: copied audio (whose voices are not protected) and
    subtitles, streams dropped, a container changed."""
    if sink.kept:
        audio = any(name.startswith("audio") for name in sink.kept)
        report.notes.append(f"{source}: {', '.join(sink.kept)} copied unchanged"
                            + ("; audio kept: voices are not protected (--no-audio drops it)" if audio else ""))
    if sink.dropped:
        report.notes.append(f"{source}: {', '.join(sink.dropped)} dropped ({sink.path.suffix} cannot hold it)")
    if sink.path.suffix.lower() != Path(str(source.location)).suffix.lower():
        report.notes.append(f"{source}: written as {sink.path.name} ({sink.encoder}; its own container cannot hold "
                            f"that codec)")
