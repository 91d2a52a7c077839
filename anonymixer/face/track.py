"""Landmark smoothing over time, so that protected faces in video do not jitter.

Each face is followed from frame to frame (nearest box centre, greedy, within half a face width)
and its landmarks pass through a one-euro filter (Casiez et al., CHI 2012): a low-pass filter whose
cut-off rises with speed, so a still face is steady and a moving one does not lag. Speeds are
measured in face widths per second, so the same settings suit near and far faces.

**Held tracks.** A detector misses a face now and then (motion blur, a turned head, a hand): for
that frame the real face would leave unprotected. So a track that finds no face keeps its face
for up to ``hold_frames`` frames (default ``HOLD_FRAMES``, 10): the face of its last detection,
moved by the track's velocity (its centre's, from its last two detections, capped at two face
widths), is returned with the detected ones and protected where it now is. A held track that
finds its face again goes on (same filter); one unmatched for more than ``hold_frames`` frames
is dropped, and a face that comes back later starts afresh.

Each track has an id, unique in the process, that its faces carry (``Face.track``): the pipeline
keeps one choice of draw per track (``face.draws``), so a person's face stays the same face.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .detect import Face


def _smoothing(cutoff_hz: float, dt: float) -> float:
    """Exponential smoothing factor of a first-order low-pass at ``cutoff_hz`` for a step ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-euro filter over an array of values (all share ``dt``).

    ``min_cutoff`` (Hz): smoothing of a still signal (lower: steadier). ``beta``: how fast the
    cut-off rises with speed (higher: less lag). ``scale``: unit of speed (here a face width).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time: float | None = None

    def __call__(self, value: np.ndarray, time: float, scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.value is None or self.speed is None or self.time is None or time <= self.time:
            self.value, self.speed, self.time = value.copy(), np.zeros_like(value), time
            return value.copy()
        dt = time - self.time
        speed = (value - self.value) / dt / max(scale, 1e-6)
        self.speed = self.speed + _smoothing(self.d_cutoff, dt) * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        alpha = 1.0 / (1.0 + (1.0 / (2.0 * math.pi * cutoff)) / dt)
        self.value = self.value + alpha * (value - self.value)
        self.time = time
        return self.value.copy()


HOLD_FRAMES = 10  # frames a lost face stays protected where its track puts it
_TRACK_IDS = itertools.count(1)  # unique in the process: several videos may share one FaceProtector


@dataclass
class _Track:
    centre: np.ndarray
    width: float
    filter: OneEuroFilter
    face: Face | None = None        # the last face returned for this track (smoothed landmarks)
    time: float = 0.0               # when it was last detected, seconds
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre, pixels per second
    missed: int = 0                 # frames since it was last detected
    detections: int = 0             # how many times it was detected
    id: int = field(default_factory=lambda: next(_TRACK_IDS))  # ``Face.track`` of its faces


class LandmarkSmoother:
    """Follows faces through a video and smooths their landmarks; ``update`` once per frame.

    ``held``: how many faces the last ``update`` returned from held tracks (not detected).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, hold_frames: int = HOLD_FRAMES) -> None:
        self.min_cutoff, self.beta, self.hold_frames = min_cutoff, beta, hold_frames
        self._tracks: list[_Track] = []
        self.held = 0

    def reset(self) -> None:
        """Forget every track (e.g. at a cut, or when a new video starts)."""
        self._tracks = []

    def update(self, faces: list[Face], time: float) -> list[Face]:
        """The same faces, in the same order, with smoothed landmarks; then the faces of tracks
        that lost theirs at most ``hold_frames`` frames ago, moved with the track. ``time`` in seconds."""
        centres = [face.box[:2] + face.box[2:] / 2 for face in faces]
        pairs = sorted(
            ((float(np.hypot(*(c - t.centre))), i, j) for i, c in enumerate(centres)
             for j, t in enumerate(self._tracks)),
        )
        matched: dict[int, _Track] = {}
        taken: set[int] = set()
        for distance, i, j in pairs:
            if i in matched or j in taken or distance > 0.5 * max(self._tracks[j].width, float(faces[i].box[2])):
                continue
            matched[i] = self._tracks[j]
            taken.add(j)
        tracks, out = [], []
        for i, face in enumerate(faces):
            track = matched.get(i) or _Track(centres[i], float(face.box[2]),
                                             OneEuroFilter(self.min_cutoff, self.beta), time=time)
            if track.face is not None and time > track.time:
                step = (centres[i] - (track.face.box[:2] + track.face.box[2:] / 2)) / (time - track.time)
                # The first step is the whole estimate: averaging it with the zero a track starts
                # from halved the speed, and a held face then fell behind the real one.
                track.velocity = (0.5 * track.velocity + 0.5 * step
                                  if track.missed == 0 and track.detections > 1 else step)
            track.centre, track.width, track.time, track.missed = centres[i], float(face.box[2]), time, 0
            track.detections += 1
            smoothed = track.filter(face.landmarks, time, scale=track.width)
            track.face = face.with_landmarks(smoothed).on_track(track.id)
            out.append(track.face)
            tracks.append(track)
        self.held = 0
        for j, track in enumerate(self._tracks):
            if j in taken or track.face is None or track.missed >= self.hold_frames:
                continue  # found again, or lost for too long: a face that comes back starts afresh
            track.missed += 1
            move = track.velocity * max(time - track.time, 0.0)
            limit = 2.0 * track.width
            if np.hypot(*move) > limit:
                move = move * (limit / np.hypot(*move))
            held = track.face.moved(float(move[0]), float(move[1]))
            track.centre = held.box[:2] + held.box[2:] / 2
            out.append(held)
            tracks.append(track)
            self.held += 1
        self._tracks = tracks
        return out

