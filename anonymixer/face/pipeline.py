"""One frame, end to end: detect -> align every face -> one batch through the Protector -> paste back.

    face_protector = FaceProtector(Protector("random:tiny", key), open_detector())
    result = face_protector.process(frame_bgr)      # (H, W, 3) uint8 BGR -> FrameResult
    result.frame, result.failures, result.timings_ms
    for result in face_protector.process_many(((frame, t) for ...), inflight=2):   # a video, in order

A frame goes through three phases, ``prepare`` (detect, align), ``protect_crops`` (the networks)
and ``paste`` (paste-back, masks); ``process`` runs them one after the other, ``process_many``
on three threads with several frames in flight (the same bytes out, in input order).

**Fail closed.** Once a face has been detected, its original pixels never reach the output
unprotected: if aligning it, protecting its batch or pasting it back raises *anything*, the face is
covered with a solid fill (its whole FFHQ square and detector box), and a failure line is recorded.
If detection itself raises, the whole frame is filled (``detect_failed``), because nobody knows
where the faces are. ``no_face`` decides what happens to frames in which no face is found:
``"pass"`` keeps the frame as it is, ``"mask"`` fills it.

**Faces the detector would miss.** Detection looks at a frame turned by quarter turns when none
is found upright (``search.find_faces``); in video, a face the detector loses is held by its
track for a few frames (``track.LandmarkSmoother``) and protected where the track puts it.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np

from ..runtime.protector import Protector
from ..runtime.stream import FramePipeline, ThreadPipeline, in_input_order
from .align import align_face, resize_affine
from .detect import Detector, Face
from .draws import DrawChooser
from .guard import ArtefactGuard, head_turn
from .identity import BackgroundCheck, Windows, open_identity_check, windows
from .identity import status as identity_status
from .paste import PASTE_STYLES, PasteRegion, PasteStyle, fill_face, paste_generated, quad_bounds
from .region import TrackOutlines
from .search import find_faces
from .track import LandmarkSmoother

NO_FACE_POLICIES = ("pass", "mask")
STAGES = ("detect", "align", "outline", "encoder", "mixer", "generator", "paste")


@dataclass
class FrameResult:
    """What happened to one frame.

    ``frame``: the output, ``(H, W, 3) uint8 BGR`` (a new array). ``faces``: as detected (with
    smoothed landmarks in video). ``protected``/``masked``: faces replaced / covered by the
    fail-closed fill. ``failures``: one line per masked face, or for a failed detection.
    ``timings_ms``: wall time per stage (``STAGES``) for this frame. ``blanked``: the whole frame
    was filled (detection failed, or no face with ``no_face="mask"``). ``turn``: 0, or the
    quarter turn (90, 180, 270 degrees clockwise) of the frame in which its faces were found
    after none was found upright (``search.find_faces``); ``held``: faces of ``faces`` that the
    detector missed in this frame but a video track still held (``track``). ``pasted``: where each
    protected face (by index in ``faces``) was pasted. ``redrawn``: faces drawn again by the
    artefact guard or the identity check (``face.guard``, ``face.identity``); ``notes``: one line
    for each.
    """

    frame: np.ndarray
    faces: list[Face] = field(default_factory=list)
    protected: int = 0
    masked: int = 0
    failures: list[str] = field(default_factory=list)
    detect_failed: bool = False
    no_face: bool = False
    blanked: bool = False
    turn: int = 0
    held: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    pasted: dict[int, PasteRegion] = field(default_factory=dict)
    redrawn: int = 0
    notes: list[str] = field(default_factory=list)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__


@dataclass
class _FrameWork:
    """A frame between the phases of ``FaceProtector``: its result so far, the aligned crops
    ``{face index: ((S, S, 3) uint8 RGB, (2, 3) crop-from-frame affine)}``, the protected faces
    ``{face index: (R, R, 3) uint8 RGB}``, the outlines that paste-back replaces
    ``{face index: (27, 2) frame pixels}`` (``region.face_outline``) and ``{face index: why it must be masked}``."""

    frame: np.ndarray
    result: FrameResult
    crops: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    protected: dict[int, np.ndarray] = field(default_factory=dict)
    outlines: dict[int, np.ndarray] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    drawn: dict[int, int] = field(default_factory=dict)   # face index -> which of the key's draws (face.draws)
    live: bool = False   # a live source's frame: its tracks' re-checks run beside the pipeline (face.draws)


def _take_frame(pipeline: FramePipeline) -> FrameResult:
    return cast(FrameResult, pipeline.result())   # a ThreadPipeline returns what its last step did


class FaceProtector:
    """Protect every face of a frame with one ``Protector`` and one ``Detector``.

    ``max_batch``: most faces per Protector call (a crowd is split into several batches).
    ``fill``: BGR colour of the fail-closed mask. ``paste_style``: how generated faces go back
    (``face.paste.PasteStyle`` or a name of ``PASTE_STYLES``; default: outline region, colour match,
    seamless clone, artefact guard where YuNet is installed). ``identity_check`` (on by default):
    measure each pasted face against its original with dlib's recogniser where installed, else SFace
    (``"dlib"``/``"sface"`` ask for one), draw again or mask a face that is too close (``face.identity``,
    ``face.draws``; in video once per track and every ``draws.RECHECK_FRAMES`` frames);
    ``identity_status`` says which check runs, or why none does. Seeded random weights (no faces to
    recognise: noise) get neither the guard nor the check.

    ``opencv_threads`` sets OpenCV's (process-wide) thread count; ``None`` leaves it alone. The
    default, 1, is deliberate: OpenCV's worker threads keep spinning after each call and starve
    the network's threads on the same cores. Measured on 2 CPU cores, tiny model, two faces: the
    encoder took 200-1800 ms per frame after a multi-threaded detection and 23 ms with
    ``opencv_threads=1``, while YuNet took 27 ms either way.
    """

    def __init__(self, protector: Protector, detector: Detector, *, no_face: str = "pass",
                 fill: tuple[int, int, int] = (0, 0, 0), max_batch: int = 16,
                 opencv_threads: int | None = 1, paste_style: str | PasteStyle = "default",
                 identity_check: bool | str = True) -> None:
        if isinstance(paste_style, str):
            if paste_style not in PASTE_STYLES:
                raise ValueError(f"paste_style must be one of {', '.join(PASTE_STYLES)}, got {paste_style!r}")
            paste_style = PASTE_STYLES[paste_style]
        if no_face not in NO_FACE_POLICIES:
            raise ValueError(f"no_face must be one of {NO_FACE_POLICIES}, got {no_face!r}")
        if opencv_threads is not None:
            cv2.setNumThreads(opencv_threads)
        self.protector = protector
        self.detector = detector
        self.no_face = no_face
        self.fill = fill
        self.max_batch = max_batch
        self.paste_style = paste_style
        # Seeded random weights draw no faces at all: nothing for the guard to tell apart.
        guarded = paste_style.guard and not getattr(protector.info, "is_random", False)
        self.guard = ArtefactGuard(protector.info.crop_template) if guarded else None
        recogniser = identity_check if isinstance(identity_check, str) else "auto"
        random_weights = bool(getattr(protector.info, "is_random", False))
        self.identity = open_identity_check(recogniser) if identity_check and not random_weights else None
        self.identity_status = identity_status(identity_check, random_weights, self.identity)
        self.draws = DrawChooser(protector, paste_style, self.guard, self.identity)
        self.outlines = TrackOutlines()   # video: dlib's outline every other frame of a track

    def process(self, frame: np.ndarray, smoother: LandmarkSmoother | None = None,
                time_s: float | None = None) -> FrameResult:
        """Protect all faces of ``frame`` ``(H, W, 3) uint8 BGR``; the input is not modified.

        In video, pass a ``smoother`` (one per video) and the frame's ``time_s`` in seconds
        (default: the wall clock, for live sources).
        """
        return self.paste(self.protect_crops(self.prepare(frame, smoother, time_s)))

    def process_many(self, frames: Iterable[tuple[np.ndarray, float | None]], inflight: int = 1,
                     smoother: LandmarkSmoother | None = None,
                     budget_bytes: int | None = None, live: bool = False) -> Generator[FrameResult, None, None]:
        """``(frame, time_s)`` pairs -> ``FrameResult``s in input order, ``inflight`` frames at once.

        Three threads, one per phase (``prepare``, ``protect_crops``, ``paste``): detection and
        alignment of frame n+1 and paste-back of frame n-1 overlap the networks on frame n, while
        the caller decodes and writes. At most ``inflight`` frames are taken from ``frames`` and
        not yet returned (frames are read lazily: no queue grows when the source is faster). The
        same bytes as ``process`` frame by frame, whatever ``inflight``; fail-closed per face.
        ``budget_bytes``: the frames in flight hold at most this many bytes of pixels together
        (one frame always goes): big photos go fewer at a time, whatever ``inflight``. ``live``: frames of
        a camera or stream: a track's identity re-check (``face.draws``) runs in a process of its own
        (``identity.BackgroundCheck``, started here once) while its frames go on; a file's stays in line,
        so that its output is the same bytes from run to run.
        """
        if live and self.identity is not None and (self.draws.background is None or not self.draws.background.alive):
            self.draws.background = BackgroundCheck(self.identity.name)

        def prepare(item: tuple[np.ndarray, float | None]) -> _FrameWork:
            work = self.prepare(item[0], smoother, item[1])
            work.live = live
            return work

        pipeline = ThreadPipeline([prepare, self.protect_crops, self.paste], inflight,
                                  names=("prepare", "protect", "paste"))
        yield from in_input_order(pipeline, frames, inflight, _take_frame,
                                  weigh=lambda item: int(item[0].nbytes), budget=budget_bytes)

    def prepare(self, frame: np.ndarray, smoother: LandmarkSmoother | None = None,
                time_s: float | None = None) -> _FrameWork:
        """Phase 1: detect (and smooth) the faces of ``frame``, align each to the model's crop and find
        its outline (``region.face_outline``, for paste-back's region: dlib's predictor where installed,
        in video on every other frame of a track, ``region.TrackOutlines``)."""
        out = frame.copy()
        work = _FrameWork(frame, FrameResult(out, timings_ms=dict.fromkeys(STAGES, 0.0)))
        result, timings = work.result, work.result.timings_ms
        t = time.perf_counter()
        try:
            found = find_faces(self.detector, frame)
            faces, result.turn = found.faces, found.turn
            if smoother is not None:
                faces = smoother.update(faces, time.monotonic() if time_s is None else time_s)
                result.held = smoother.held
        except Exception as exc:  # fail closed: no idea where the faces are
            out[:] = self.fill
            result.detect_failed = result.blanked = True
            result.failures.append(f"face detection failed, whole frame masked: {_reason(exc)}")
            return work
        finally:
            timings["detect"] = (time.perf_counter() - t) * 1000.0
        result.faces = faces
        if not faces:
            result.no_face = True
            if self.no_face == "mask":
                out[:] = self.fill
                result.blanked = True
            return work
        size = self.protector.input_size
        t = time.perf_counter()
        for i, face in enumerate(faces):
            try:
                crop, matrix = align_face(frame, face.landmarks, size, self.protector.crop_template)
                work.crops[i] = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), matrix)
            except Exception as exc:
                work.failed[i] = f"alignment failed: {_reason(exc)}"
        timings["align"] = (time.perf_counter() - t) * 1000.0
        if self.paste_style.region == "outline":   # the original's outline, for paste-back: a property of the frame
            t = time.perf_counter()
            for i in list(work.crops):
                try:
                    work.outlines[i] = self.outlines.outline(frame, faces[i], self.paste_style.dlib)
                except Exception as exc:
                    del work.crops[i]
                    work.failed[i] = f"face outline failed: {_reason(exc)}"
            timings["outline"] = (time.perf_counter() - t) * 1000.0
        return work

    def protect_crops(self, work: _FrameWork) -> _FrameWork:
        """Phase 2: the networks on the aligned crops, ``max_batch`` faces per Protector call; a face
        whose track has chosen another of the key's draws (``face.draws``) is generated with that draw."""
        timings = work.result.timings_ms
        plan = {i: self.draws.planned(work.result.faces[i].track) for i in work.crops}
        for draw in sorted(set(plan.values())):
            order = sorted(i for i in work.crops if plan[i] == draw)
            # A track's other draw goes one face per call, as paste-back draws it when this frame was
            # prepared before the track chose (frames in flight): the same bytes either way.
            batch_size = self.max_batch if draw == self.draws.first else 1
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                try:
                    batch, feeds = np.stack([work.crops[i][0] for i in chunk]), self.draws.feeds(draw)
                    faces_out = self.protector.protect(batch) if feeds is None else self.protector.protect(batch, feeds)
                    if faces_out.shape[0] != len(chunk):
                        raise RuntimeError(f"the Protector returned {faces_out.shape[0]} faces for {len(chunk)}")
                    for stage, ms in self.protector.last_timings_ms.items():
                        timings[stage] = timings.get(stage, 0.0) + ms
                    work.protected.update(zip(chunk, faces_out))
                    work.drawn.update(dict.fromkeys(chunk, draw))
                except Exception as exc:
                    work.failed.update((i, f"protection failed: {_reason(exc)}") for i in chunk)
        return work

    def paste(self, work: _FrameWork) -> FrameResult:
        """Phase 3: choose each face's draw (artefact guard, identity check: ``face.draws``) and paste it
        back; mask every face that failed on the way (fail closed). ``timings_ms["paste"]``: paste-back
        itself (region, colour, clone, blend; once per draw pasted; the outline it replaces is found
        in phase 1, ``timings_ms["outline"]``); ``["guard"]`` and
        ``["identity"]`` (when they ran): YuNet and the recogniser, and the networks for the draws they
        asked for."""
        result = work.result
        out, faces, failed = result.frame, result.faces, work.failed
        size = self.protector.input_size
        template = self.protector.info.crop_template
        timings = result.timings_ms
        checks_before = timings.get("guard", 0.0) + timings.get("identity", 0.0)
        t = time.perf_counter()
        for i, face_rgb in work.protected.items():
            try:
                landmarks = faces[i].landmarks
                matrix = resize_affine(work.crops[i][1], size, face_rgb.shape[0])
                outline = work.outlines.get(i)
                y0, y1, x0, x1 = quad_bounds(landmarks, out.shape)
                # the paste stays inside: the draws tried and turned down are undone
                before = out[y0:y1, x0:x1].copy() if self.identity is not None or self.guard is not None else None

                def paste_one(face_rgb: np.ndarray, style: PasteStyle, matrix: np.ndarray = matrix,
                              i: int = i, outline: np.ndarray | None = outline) -> PasteRegion:
                    return paste_generated(out, work.frame, cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR), matrix,
                                           faces[i].landmarks, outline, template, style)

                def restore(box: tuple[int, int, int, int] = (y0, y1, x0, x1), before: np.ndarray | None = before) -> None:
                    out[box[0]:box[1], box[2]:box[3]] = before

                def read(landmarks: np.ndarray = landmarks) -> Windows:
                    return windows(work.frame, out, landmarks)

                def verify(landmarks: np.ndarray = landmarks) -> float:
                    assert self.identity is not None
                    return self.identity.measure(work.frame, out, landmarks)

                result.pasted[i], redrawn = self.draws.paste(
                    work.crops[i][0], (work.drawn.get(i, 0), face_rgb), faces[i].track, paste_one, verify, restore,
                    f"face {i + 1} of {len(faces)}", result.notes, timings, head_turn(landmarks), work.live, read)
                result.redrawn += int(redrawn)
                result.protected += 1
            except Exception as exc:
                result.pasted.pop(i, None)
                failed[i] = f"paste-back failed: {_reason(exc)}"
        checks = timings.get("guard", 0.0) + timings.get("identity", 0.0) - checks_before
        timings["paste"] = (time.perf_counter() - t) * 1000.0 - checks
        for i in sorted(failed):
            self._mask(out, faces[i])
            x, y, w, h = (int(round(float(v))) for v in faces[i].box)
            result.failures.append(f"face {i + 1} of {len(faces)} at x={x} y={y} w={w} h={h} masked: {failed[i]}")
        result.masked = len(failed)
        return result

    def _mask(self, out: np.ndarray, face: Face) -> None:
        try:
            fill_face(out, face.landmarks, face.box, self.fill)
        except Exception:  # landmarks and box unusable: nothing smaller is safe
            out[:] = self.fill


def changed_region(result: FrameResult) -> np.ndarray:
    """``(H, W) bool``: every pixel the pipeline may have written for ``result`` (True), a superset
    of the pasted and filled pixels: the whole frame if it was blanked, else each detected face's
    fail-closed region (its FFHQ crop square and detector box), which contains its paste-back.
    Pixels outside it are the input's own, so they may be taken from a deeper copy of the input
    (16-bit photos) without putting any face pixel back."""
    height, width = result.frame.shape[:2]
    if result.blanked:
        return np.ones((height, width), bool)
    region = np.zeros((height, width, 3), np.uint8)
    for face in result.faces:
        try:
            fill_face(region, face.landmarks, face.box, (1, 1, 1))
        except Exception:  # unusable landmarks and box: nothing smaller is safe
            region[:] = 1
    grown: np.ndarray = cv2.dilate(region[:, :, 0], np.ones((5, 5), np.uint8))  # rasterisation margin
    return grown.astype(bool)
