"""The batch and real-time loop: sources -> FaceProtector -> output files, with a progress bar.

Photos are written under the output folder with their own names and formats (gray stays gray, an
alpha channel is kept). Videos are written frame for frame at the source's size and rate, with
landmarks smoothed over time. Cameras and streams run until they end, ``max_frames``, Ctrl-C, or
q/Esc in the preview. Every problem is one line naming the input; the rest of the batch goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from ..errors import AnonymixerError
from .io import read_photo, write_image
from .pipeline import STAGES, FaceProtector, FrameResult
from .preview import Preview
from .sources import Source, VideoSink, open_capture, read_frames
from .track import LandmarkSmoother

MAX_LINES_PER_SOURCE = 5  # a video that fails on every frame should not flood the terminal


@dataclass(frozen=True)
class Outcome:
    """What became of one input: its ``output`` (``None``: nothing written), whether it ``failed``
    (unreadable, a masked face, an unwritable output) and the report lines about it."""

    source: Source
    output: Path | None
    failed: bool
    problems: tuple[str, ...] = ()


@dataclass
class RunReport:
    """What a run did. ``failures``: one line per failed input or masked face (capped per video);
    ``failed_inputs``: inputs with any failure; ``notes``: things worth knowing that are not
    failures (no face found). ``stage_ms``: wall time per stage, summed over ``frames``."""

    written: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failed_inputs: int = 0
    notes: list[str] = field(default_factory=list)
    frames: int = 0
    faces: int = 0
    masked: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    outcomes: list[Outcome] = field(default_factory=list)

    def merge(self, other: RunReport) -> None:
        """Append ``other`` (the report of later inputs) to this one; ``seconds`` is left alone."""
        self.written.extend(other.written)
        self.failures.extend(other.failures)
        self.failed_inputs += other.failed_inputs
        self.notes.extend(other.notes)
        self.frames += other.frames
        self.faces += other.faces
        self.masked += other.masked
        for stage, ms in other.stage_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms
        self.outcomes.extend(other.outcomes)

    def add_timings(self, result: FrameResult) -> None:
        for stage, ms in result.timings_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms

    def timing_line(self) -> str:
        """Mean wall time per frame of each stage, e.g. ``detect 41.0 ms, align 1.2 ms, ...``."""
        frames = max(self.frames, 1)
        return ", ".join(f"{stage} {ms / frames:.1f} ms" for stage, ms in self.stage_ms.items())

    def summary(self) -> str:
        lines = [f"{len(self.written)} output(s) written: {self.frames} frame(s), {self.faces} face(s) "
                 f"protected, {self.masked} masked, in {self.seconds:.1f} s"]
        if self.frames:
            lines.append(f"per frame: {self.timing_line()}")
        lines.extend(f"note: {line}" for line in self.notes)
        if self.failures:
            lines.append(f"{self.failed_inputs} input(s) failed or had faces masked:")
            lines.extend(f"  {line}" for line in self.failures)
        return "\n".join(lines)


def protect_sources(face_protector: FaceProtector, sources: list[Source], out_dir: Path | None, *,
                    preview: Preview | None = None, max_frames: int | None = None) -> RunReport:
    """Protect every source; write outputs under ``out_dir`` (``None``: preview only).

    Photos come first, then videos, cameras and streams (``processing_order``); the report is the
    merge of one report per source in that order, which is also how ``anonymixer.cluster`` puts
    together the reports of its Ray actors, so both print the same lines.
    """
    report = RunReport()
    start = time.perf_counter()
    preview = preview or Preview(False)
    targets: dict[Path, Source] = {}
    photos = sum(source.kind == "image" for source in sources)
    with tqdm(total=photos, unit="photo", desc="photos", disable=None if photos else True) as bar:
        for source in processing_order(sources):
            usable, target = plan_output(source, out_dir, targets, report)
            if usable:
                report.merge(protect_source(face_protector, source, target, preview=preview,
                                            max_frames=max_frames))
            if source.kind == "image":
                bar.update(1)
                bar.set_postfix(faces=report.faces, masked=report.masked)
    preview.close()
    if preview.note:
        report.notes.append(preview.note)
    report.seconds = time.perf_counter() - start
    return report


def processing_order(sources: list[Source]) -> list[Source]:
    """Photos first, then videos, cameras and streams; each group in input order."""
    return [s for s in sources if s.kind == "image"] + [s for s in sources if s.kind != "image"]


def protect_source(face_protector: FaceProtector, source: Source, target: Path | None, *,
                   preview: Preview | None = None, max_frames: int | None = None) -> RunReport:
    """One photo or one whole video (landmarks smoothed over its frames) -> its own report, with
    one ``outcomes`` entry. The step that a single process and a Ray actor both run per input."""
    report = RunReport()
    if source.kind == "image":
        _protect_photo(face_protector, source, target, report, preview or Preview(False))
    else:
        _protect_video(face_protector, source, target, report, preview or Preview(False), max_frames)
    output = report.written[-1] if report.written else None
    report.outcomes.append(Outcome(source, output, report.failed_inputs > 0, tuple(report.failures)))
    return report


def plan_output(source: Source, out_dir: Path | None, targets: dict[Path, Source],
                report: RunReport) -> tuple[bool, Path | None]:
    """``(usable, output path)``; the path is ``None`` without an output folder. An unusable
    output (it would overwrite the input or another output) is reported here."""
    if out_dir is None:
        return True, None
    target = out_dir / source.output
    key = target.resolve()
    problem = None
    if key in targets:
        problem = f"its output {target} would overwrite the output of {targets[key]}; rename one of them"
    elif not source.live and Path(str(source.location)).resolve() == key:
        problem = "its output would overwrite the input itself; choose another --out folder"
    if problem:
        report.failures.append(f"{source}: {problem}")
        report.failed_inputs += 1
        report.outcomes.append(Outcome(source, None, True, (report.failures[-1],)))
        return False, None
    targets[key] = source
    return True, target


def _protect_photo(face_protector: FaceProtector, source: Source, target: Path | None, report: RunReport,
                   preview: Preview) -> None:
    try:
        image, restore = read_photo(str(source.location))
    except AnonymixerError as exc:
        report.failures.append(str(exc))
        report.failed_inputs += 1
        return
    except Exception as exc:  # a decoder bug must not stop the batch
        report.failures.append(f"{source}: cannot read ({type(exc).__name__}: {str(exc).strip()[:200]})")
        report.failed_inputs += 1
        return
    result = face_protector.process(image)
    _count(result, report)
    preview.show(result.frame, result, 0.0)
    if result.failures:
        report.failed_inputs += 1
        report.failures.extend(f"{source}: {line}" for line in result.failures)
    if result.detect_failed:
        report.failures[-1] += "; nothing written"
        return
    if result.no_face:
        what = "written unchanged" if face_protector.no_face == "pass" else "written fully masked (--no-face mask)"
        report.notes.append(f"{source}: no face found; {what}")
    if target is not None:
        try:
            write_image(target, restore(result.frame))
            report.written.append(target)
        except (AnonymixerError, OSError, cv2.error) as exc:
            report.failures.append(f"{target}: cannot write output ({str(exc).strip().splitlines()[-1]})")
            if not result.failures:  # not counted yet
                report.failed_inputs += 1


def _count(result: FrameResult, report: RunReport) -> None:
    report.frames += 1
    report.faces += result.protected
    report.masked += result.masked
    report.add_timings(result)


def _protect_video(face_protector: FaceProtector, source: Source, target: Path | None, report: RunReport,
                   preview: Preview, max_frames: int | None) -> None:
    try:
        capture, info = open_capture(source)
    except AnonymixerError as exc:
        report.failures.append(str(exc))
        report.failed_inputs += 1
        return
    sink = VideoSink(target, info.fps) if target is not None else None
    smoother = LandmarkSmoother()
    frames = faces = lines = 0
    failed = False
    started = time.perf_counter()
    bar = tqdm(total=info.frames or None, unit="frame", desc=str(source), disable=None)
    try:
        for frame in read_frames(capture):
            result = face_protector.process(frame, smoother, None if source.live else frames / info.fps)
            _count(result, report)
            frames += 1
            faces += result.protected
            for line in result.failures:
                failed = True
                lines += 1
                if lines <= MAX_LINES_PER_SOURCE:
                    report.failures.append(f"{source} frame {frames}: {line}")
            if sink is not None:
                sink.write(result.frame)
            elapsed = time.perf_counter() - started
            bar.update(1)
            bar.set_postfix(faces=faces, faces_per_s=f"{faces / max(elapsed, 1e-9):.1f}")
            if not preview.show(result.frame, result, frames / max(elapsed, 1e-9)):
                report.notes.append(f"{source}: stopped from the preview window after {frames} frame(s)")
                break
            if max_frames is not None and frames >= max_frames:
                break
    except KeyboardInterrupt:
        if not source.live:
            raise
        report.notes.append(f"{source}: stopped after {frames} frame(s)")
    except AnonymixerError as exc:  # the output cannot be written
        report.failures.append(str(exc))
        failed = True
    finally:
        bar.close()
        capture.release()
        if sink is not None:
            sink.close()
    if lines > MAX_LINES_PER_SOURCE:
        report.failures.append(f"{source}: ... and {lines - MAX_LINES_PER_SOURCE} more masked face(s) or frame(s)")
    if frames == 0:
        report.failures.append(f"{source}: no frame could be decoded (corrupt, truncated or unsupported video)")
        failed = True
    elif sink is not None and sink.frames:
        report.written.append(sink.path)
        if target is not None and sink.path != target:
            report.notes.append(f"{source}: written as {sink.path} (no {target.suffix} writer in OpenCV here)")
    report.failed_inputs += int(failed)
