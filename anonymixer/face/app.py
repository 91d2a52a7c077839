"""The batch and real-time loop: sources -> FaceProtector -> output files, with a progress bar.

Photos are written under the output folder with their own names and formats (gray stays gray, an
alpha channel is kept, 16-bit stays 16-bit). Videos are written frame for frame at the source's
size and rate, with landmarks smoothed over time. Cameras and streams run until they end,
``max_frames``, Ctrl-C, or q/Esc in the preview. ``inflight`` photos or video frames are in flight
at once, with the same outputs and report lines as one at a time. Every problem is one line naming
the input; the rest of the batch goes on.

Outputs are atomic (a temporary file renamed on success, ``anonymixer.atomic``) and never land on
an input or on another output of the run (``OutputPlan``). Ctrl-C and SIGTERM (``Terminated``)
stop the run: the output being written is removed (a live recording commits its open segment and
is reported; Ctrl-C on a recording ends that recording only), and the report says what was not
processed (``RunReport.interrupted``).
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Generator, Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import write_bytes
from ..errors import AnonymixerError, OutputError, Terminated
from .io import LOSSY_SUFFIXES, Restore, read_photo, write_image
from .outputs import OutputPlan
from .pipeline import FaceProtector, FrameResult, changed_region
from .preview import Preview
from .runreport import Outcome, RunReport
from .sources import Source
from .video import VideoOptions, video_output
from .videorun import protect_video

# Photos in flight (--inflight) hold at most this many bytes of 8-bit pixels together (one photo
# always goes): a batch of 100 MP photos goes one at a time, whatever --inflight says.
INFLIGHT_PHOTO_BYTES = 512 * 2**20


def signal_name(number: int) -> str:
    return signal.Signals(number).name


def protect_sources(face_protector: FaceProtector, sources: list[Source], out_dir: Path | None, *,
                    preview: Preview | None = None, max_frames: int | None = None, inflight: int = 1,
                    video: VideoOptions = VideoOptions()) -> RunReport:
    """Protect every source; write outputs under ``out_dir`` (``None``: preview only).

    Photos come first, then videos, cameras and streams (``processing_order``); the report is the
    merge of one report per source in that order, which is also how ``anonymixer.cluster`` puts
    together the reports of its Ray actors, so both print the same lines. ``inflight``: photos or
    video frames in flight (``FaceProtector.process_many``). Ctrl-C or SIGTERM stops the run
    (``report.interrupted``): the input in progress writes nothing (a live recording commits its
    open segment), and every input whose report is not in yet counts as not processed.
    """
    report = RunReport()
    start = time.perf_counter()
    preview = preview or Preview(False)
    plan = None if out_dir is None else OutputPlan(out_dir, [str(s.location) for s in sources if not s.live])
    ordered = processing_order(sources)
    photos = sum(source.kind == "image" for source in sources)
    done = 0
    reports = _source_reports(face_protector, ordered, plan, preview, max_frames, inflight, video)
    try:
        with tqdm(total=photos, unit="photo", desc="photos", disable=None if photos else True) as bar, \
                closing(reports):
            for source, source_report in reports:
                report.merge(source_report)
                done += 1
                if source.kind == "image":
                    bar.update(1)
                    bar.set_postfix(faces=report.faces, masked=report.masked)
                if source_report.interrupted is not None:   # a recording stopped by SIGTERM, its report in
                    raise Terminated()
    except KeyboardInterrupt as exc:
        report.interrupted = getattr(exc, "signal_number", signal.SIGINT.value)
        left = len(ordered) - done
        report.notes.append(f"interrupted by {signal_name(report.interrupted)}: {left} input(s) not processed"
                            + (f", first {ordered[done]}" if left else ""))
    finally:
        preview.close()
    if preview.note:
        report.notes.append(preview.note)
    report.seconds = time.perf_counter() - start
    return report


def processing_order(sources: list[Source]) -> list[Source]:
    """Photos first, then videos, cameras and streams; each group in input order."""
    return [s for s in sources if s.kind == "image"] + [s for s in sources if s.kind != "image"]


def protect_source(face_protector: FaceProtector, source: Source, target: Path | None, *,
                   preview: Preview | None = None, max_frames: int | None = None, inflight: int = 1,
                   video: VideoOptions = VideoOptions()) -> RunReport:
    """One photo or one whole video (landmarks smoothed over its frames) -> its own report, with
    one ``outcomes`` entry. The step a Ray actor runs per input, and a single process per video
    (and per photo with ``inflight`` 1; more photos in flight give the same reports)."""
    report = RunReport()
    if source.kind == "image":
        photo = _read_photo(source, report)
        if photo is not None:
            _finish_photo(source, target, face_protector.process(photo[0]), photo[1], report,
                          preview or Preview(False))
    else:
        protect_video(face_protector, source, target, report, preview or Preview(False), max_frames, inflight,
                      video)
    return _with_outcome(source, report)


def _with_outcome(source: Source, report: RunReport) -> RunReport:
    """``report``, the whole report of ``source``, with its ``outcomes`` entry."""
    output = report.written[-1] if report.written else None
    report.outcomes.append(Outcome(source, output, report.failed_inputs > 0, tuple(report.failures), report.frames,
                                   report.faces, report.masked, tuple(report.notes), dict(report.stage_ms)))
    return report


def _source_reports(face_protector: FaceProtector, ordered: list[Source], plan: OutputPlan | None,
                    preview: Preview, max_frames: int | None, inflight: int,
                    video: VideoOptions) -> Generator[tuple[Source, RunReport], None, None]:
    """``(source, its report)`` for each of ``ordered`` (photos first), in that order. Photos go
    ``inflight`` at once (``_photos_in_flight``), videos one by one with ``inflight`` frames."""
    photos = [s for s in ordered if s.kind == "image"]
    if inflight > 1 and len(photos) > 1:
        yield from _photos_in_flight(face_protector, photos, plan, preview, inflight)
        ordered = ordered[len(photos):]
    for source in ordered:
        report = RunReport()
        usable, target = plan_output(source, plan, report)
        if usable:
            report = protect_source(face_protector, source, target, preview=preview, max_frames=max_frames,
                                    inflight=inflight, video=video)
        yield source, report


def _photos_in_flight(face_protector: FaceProtector, photos: list[Source], plan: OutputPlan | None,
                      preview: Preview, inflight: int) -> Iterator[tuple[Source, RunReport]]:
    """The reports ``protect_source`` gives for ``photos``, in order, with ``inflight`` photos at
    once through ``FaceProtector.process_many``: this thread decodes photo n+1 and writes photo
    n-1 while the networks run on photo n. Photos are decoded lazily, at most ``inflight`` ahead
    of the one being written (memory does not grow with the folder). A photo that cannot be read,
    or whose output path is refused, is reported in its place, after the photos before it."""
    # In input order: (source, report, (output path, restore) while its frame is in flight, else None).
    waiting: deque[tuple[Source, RunReport, tuple[Path | None, Restore] | None]] = deque()

    def frames() -> Iterator[tuple[np.ndarray, float | None]]:
        for source in photos:
            report = RunReport()
            usable, target = plan_output(source, plan, report)   # reports an unusable output itself
            photo = _read_photo(source, report) if usable else None
            if photo is None:
                waiting.append((source, _with_outcome(source, report) if usable else report, None))
            else:
                waiting.append((source, report, (target, photo[1])))
                yield photo[0], None

    def reported() -> Iterator[tuple[Source, RunReport]]:
        while waiting and waiting[0][2] is None:
            source, report, _ = waiting.popleft()
            yield source, report

    with closing(face_protector.process_many(frames(), inflight, budget_bytes=INFLIGHT_PHOTO_BYTES)) as results:
        for result in results:
            yield from reported()
            source, report, pending = waiting.popleft()
            assert pending is not None   # results come in input order, one per frame
            _finish_photo(source, pending[0], result, pending[1], report, preview)
            yield source, _with_outcome(source, report)
            yield from reported()
    yield from reported()   # unreadable photos after the last readable one


def plan_output(source: Source, plan: OutputPlan | None, report: RunReport) -> tuple[bool, Path | None]:
    """``(usable, output path)``; the path is ``None`` without an output folder (``plan``). An
    unusable output (it would overwrite an input or another output, ``OutputPlan.claim``) is
    reported here."""
    if plan is None:
        return True, None
    relative = source.output if source.kind == "image" else video_output(source.output)
    try:
        return True, plan.claim(relative, str(source))
    except OutputError as exc:
        report.fail(str(exc))
        report.outcomes.append(Outcome(source, None, True, (report.failures[-1],)))
        return False, None


def _read_photo(source: Source, report: RunReport) -> tuple[np.ndarray, Restore] | None:
    """``read_photo`` of ``source``, or ``None`` with the one line that says why in ``report``."""
    try:
        return read_photo(str(source.location))
    except AnonymixerError as exc:
        report.fail(str(exc))
    except Exception as exc:  # a decoder bug must not stop the batch
        report.fail(f"{source}: cannot read ({type(exc).__name__}: {str(exc).strip()[:200]})")
    return None


def _finish_photo(source: Source, target: Path | None, result: FrameResult, restore: Restore,
                  report: RunReport, preview: Preview) -> None:
    """Count, show and write (``target``; ``None``: not written) one protected photo."""
    report.add_frame(result)
    preview.show(result.frame, result, 0.0)
    lines = [f"{source}: {line}" for line in result.failures]
    report.notes.extend(f"{source}: {line}" for line in result.notes)  # faces drawn again (face.guard)
    if result.detect_failed:
        lines[-1] += "; nothing written"
    elif result.blanked:
        lines.append(f"{source}: no face found; written fully masked (--no-face mask)")
    if result.turn:
        report.notes.append(f"{source}: face(s) found only with the photo turned {result.turn} degrees (stored "
                            f"sideways or upside down without a tag?); protected, written as stored")
    if target is not None and not result.detect_failed:
        try:
            replaces = target.is_file()
            unchanged = restore.unchanged(target.suffix) if result.no_face and not result.blanked else None
            if unchanged is not None:
                write_bytes(target, unchanged)
            else:
                write_image(target, restore(result.frame, lambda: changed_region(result)))
            report.written.append(target)
            report.replaced += replaces
        except AnonymixerError as exc:
            lines.append(f"{exc}")
        else:
            if result.no_face and not result.blanked:
                report.notes.append(f"{source}: no face found; " + (
                    "written unchanged (its pixels as they were, metadata removed)"
                    if unchanged is not None or target.suffix.lower() not in LOSSY_SUFFIXES else
                    f"written re-encoded as {target.suffix} (its pixels may differ slightly)"))
    elif result.no_face and not result.blanked:
        report.notes.append(f"{source}: no face found")
    if lines:
        report.failures.extend(lines)
        report.failed_inputs += 1
