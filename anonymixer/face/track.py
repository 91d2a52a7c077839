"""Landmark smoothing over time, so that protected faces in video do not jitter.

Each face is followed from frame to frame (nearest box centre, greedy, within half a face width)
and its landmarks pass through a one-euro filter (Casiez et al., CHI 2012): a low-pass filter whose
cut-off rises with speed, so a still face is steady and a moving one does not lag. Speeds are
measured in face widths per second, so the same settings suit near and far faces. A face that is
not found in a frame loses its track; when it comes back it starts afresh (no stale state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass
class _Track:
    centre: np.ndarray
    width: float
    filter: OneEuroFilter


class LandmarkSmoother:
    """Follows faces through a video and smooths their landmarks; ``update`` once per frame."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5) -> None:
        self.min_cutoff, self.beta = min_cutoff, beta
        self._tracks: list[_Track] = []

    def reset(self) -> None:
        """Forget every track (e.g. at a cut, or when a new video starts)."""
        self._tracks = []

    def update(self, faces: list[Face], time: float) -> list[Face]:
        """The same faces, in the same order, with smoothed landmarks; ``time`` in seconds."""
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
                                             OneEuroFilter(self.min_cutoff, self.beta))
            track.centre, track.width = centres[i], float(face.box[2])
            smoothed = track.filter(face.landmarks, time, scale=track.width)
            out.append(face.with_landmarks(smoothed))
            tracks.append(track)
        self._tracks = tracks  # unmatched old tracks are dropped: a lost face restarts clean
        return out
