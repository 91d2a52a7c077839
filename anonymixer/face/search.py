"""Where faces are looked for: at every scale of a big photo, and at every quarter turn.

A face the detector never sees leaves as it came, so two searches widen what it sees:

**Tiles and levels** (``TiledDetector``). A detector finds faces down to some size in the pixels it
is given (YuNet: a face box of 24 px, measured on the packaged photos; 16 px about half of the
time). Shrinking a 48 MP photo to 1920 px before detection (as we did) loses every face under
about 100 px. So the image is searched at level 0, the scale where the smallest face we promise
(``min_face``, a box width in image pixels) is ``reliable_px`` wide (1.0 for 24 px: full
resolution), then at levels ``level_ratio`` (3) times smaller each, until one level fits in a
single ``tile``. A level larger than ``tile`` x ``tile`` pixels is cut into equal tiles that
overlap by ``overlap`` pixels; a face that touches a tile's inner edge is dropped there (it lies
whole in the neighbouring tile if it is at most ``overlap`` wide, else a coarser level finds it
whole). Boxes found twice (two levels) are merged (the higher score wins). An image that fits in
one tile at level 0 is detected exactly as before, in one call.

**Quarter turns** (``find_faces``). A frame stored sideways without a tag (or tagged in a way no
reader saw) holds faces lying on their side, which detectors miss. When a frame yields no face
upright, it is detected again turned by 90, 180 and 270 degrees, and the faces of the turn with
the most confident face are mapped back to the frame (boxes and landmarks; alignment and
paste-back work in any orientation, so the output keeps the frame's own orientation). The cost is
three more detections, paid only on frames in which no face is found upright.

**Faces found upright that lie on their side** (``orientation``). A detector can find a face lying on
its side *upright*, with its landmarks placed as for an upright face (README's astronaut turned a
quarter: YuNet scores her 0.84 at turn 0, roll 0, mouth below the eyes). Pasted with those landmarks,
her eyes or mouth stayed: dlib took the protected face for her under 6 of 6 keys (session 8,
``benchmarks/experiments/pasteback_head_turn/rotated_faces.py``). So each face found upright is
checked: the detector runs on a ``ORIENT_PX`` window of twice its box, upright and at the three
turns; when it is surer of the face turned (its best face near the window's centre scores higher),
the frame is detected again at that turn and the face turned back replaces it (the frame's other
faces are kept). On the 115 faces of the paste-back benchmark's real photos, none was surer turned
(the turned score was at least 0.08 lower); on the sideways astronaut, 0.07 higher. Cost: four
detections of a ``ORIENT_PX``-pixel window per face found, and a whole-frame detection for a face
that lies on its side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .detect import Detector, Face

TURNS = (90, 180, 270)  # degrees clockwise, in the order they are tried
ORIENT_PX = 160         # ``orientation``: a face's window, twice its box, is checked at this size
_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class Found:
    """The faces of a frame, in frame pixels, and the ``turn`` (0, 90, 180, 270 degrees clockwise)
    of the frame in which they were found (0: upright)."""

    faces: list[Face]
    turn: int = 0


def find_faces(detector: Detector, frame: np.ndarray, turns: tuple[int, ...] = TURNS) -> Found:
    """Faces of ``frame`` ``(H, W, 3) uint8 BGR``: upright (a face that lies on its side replaced by
    the same face found at its turn: ``orientation``), else those of the turn (of ``turns``) whose
    best face scores highest (the first on a tie)."""
    faces = detector.detect(frame)
    height, width = frame.shape[:2]
    if faces:
        sideways = {i: turn for i, face in enumerate(faces) if (turn := orientation(detector, frame, face))}
        found_turn = 0
        for turn in sorted(set(sideways.values())):
            turned = [turned_back(face, turn, width, height)
                      for face in detector.detect(np.ascontiguousarray(cv2.rotate(frame, _ROTATE[turn])))]
            for i in (i for i, t in sideways.items() if t == turn):
                overlaps = [(_iou(faces[i].box, face.box), n) for n, face in enumerate(turned)]
                overlap, match = max(overlaps, default=(0.0, -1))
                if overlap > 0.0:   # none: the face stays as found (it is still protected there)
                    faces[i], found_turn = turned[match], turn
        return Found(faces, found_turn)
    best = Found([])
    for turn in turns:  # all of them: a face upside down is found, poorly, a quarter turn early
        faces = detector.detect(np.ascontiguousarray(cv2.rotate(frame, _ROTATE[turn])))
        if faces and (not best.faces or max(f.score for f in faces) > max(f.score for f in best.faces)):
            best = Found([turned_back(face, turn, width, height) for face in faces], turn)
    return best


def orientation(detector: Detector, frame: np.ndarray, face: Face) -> int:
    """0, or the turn (90, 180 or 270 degrees clockwise) of ``frame`` at which ``detector`` is surer
    of ``face`` (found upright) than upright: its best face near the centre of a window of twice the
    face's box, scaled to ``ORIENT_PX``, scores higher turned than upright."""
    x, y, w, h = (float(v) for v in face.box)
    scale = ORIENT_PX / max(2.0 * max(w, h), 1.0)
    to_window = np.array([[scale, 0.0, ORIENT_PX / 2.0 - scale * (x + w / 2.0)],
                          [0.0, scale, ORIENT_PX / 2.0 - scale * (y + h / 2.0)]])
    window = cv2.warpAffine(frame, to_window, (ORIENT_PX, ORIENT_PX),
                            flags=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))

    def score(image: np.ndarray) -> float:
        near = [f.score for f in detector.detect(np.ascontiguousarray(image))
                if math.hypot(f.box[0] + f.box[2] / 2.0 - ORIENT_PX / 2.0,
                              f.box[1] + f.box[3] / 2.0 - ORIENT_PX / 2.0) < 0.25 * ORIENT_PX]
        return max(near, default=0.0)

    upright = score(window)
    turned = {turn: score(cv2.rotate(window, _ROTATE[turn])) for turn in TURNS}
    turn = max(turned, key=lambda t: (turned[t], -t))
    return turn if turned[turn] > upright else 0


def _points_back(points: np.ndarray, turn: int, width: int, height: int) -> np.ndarray:
    """Points ``(N, 2)`` of the frame turned ``turn`` degrees clockwise -> points of the frame
    (``width`` x ``height``, pixel centres at integers)."""
    x, y = points[:, 0], points[:, 1]
    if turn == 90:      # turned (x', y') = (H - 1 - y, x)
        back = (y, height - 1 - x)
    elif turn == 180:   # (W - 1 - x, H - 1 - y)
        back = (width - 1 - x, height - 1 - y)
    elif turn == 270:   # (y, W - 1 - x)
        back = (width - 1 - y, x)
    else:
        return points
    return np.stack(back, axis=1).astype(np.float32)


def turned_back(face: Face, turn: int, width: int, height: int) -> Face:
    """A face found in the frame turned ``turn`` degrees clockwise, in the frame's own pixels."""
    x, y, w, h = (float(v) for v in face.box)
    corners = _points_back(np.array([[x, y], [x + w, y + h]], np.float32), turn, width, height)
    low, high = corners.min(axis=0), corners.max(axis=0)
    box = np.array([low[0], low[1], high[0] - low[0], high[1] - low[1]], np.float32)
    return Face(box, _points_back(face.landmarks.astype(np.float32), turn, width, height), face.score)


class TiledDetector:
    """Any ``Detector``, run on tiles at several scales so that faces of ``min_face`` pixels (box
    width) are found in an image of any size; see the module's docstring for the scheme.

    ``reliable_px``: the smallest face box the wrapped detector finds reliably in its own input.
    ``tile``: the largest side given to one detector call. ``overlap``: pixels shared by
    neighbouring tiles (at least the largest face a level is responsible for, plus context).
    """

    def __init__(self, detector: Detector, min_face: float = 24.0, reliable_px: float = 24.0,
                 tile: int = 1920, overlap: int = 160, level_ratio: float = 3.0, merge_iou: float = 0.4) -> None:
        if min_face <= 0 or reliable_px <= 0 or tile <= 2 * overlap or level_ratio <= 1:
            raise ValueError("TiledDetector needs min_face, reliable_px > 0, tile > 2 * overlap, level_ratio > 1")
        self.detector = detector
        self.name = detector.name
        self.min_face, self.reliable_px = min_face, reliable_px
        self.tile, self.overlap, self.level_ratio, self.merge_iou = tile, overlap, level_ratio, merge_iou

    def levels(self, width: int, height: int) -> list[float]:
        """Scales searched for a ``width`` x ``height`` image, finest first; the last fits one tile."""
        scale = min(1.0, self.reliable_px / self.min_face)
        scales = [scale]
        while max(width, height) * scale > self.tile:
            scale = min(scale / self.level_ratio, self.tile / max(width, height))
            scales.append(scale)
        return scales

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        height, width = image_bgr.shape[:2]
        scales = self.levels(width, height)
        if scales == [1.0]:
            return self.detector.detect(image_bgr)  # one call, exactly as the detector alone
        found: list[Face] = []
        for scale in scales:
            level = image_bgr if scale == 1.0 else cv2.resize(
                image_bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
            found.extend(face.scaled(1.0 / scale) for face in self._tiles(level))
        return merge(found, self.merge_iou)

    def _tiles(self, level: np.ndarray) -> list[Face]:
        height, width = level.shape[:2]
        xs, ys = tile_starts(width, self.tile, self.overlap), tile_starts(height, self.tile, self.overlap)
        if len(xs) == 1 and len(ys) == 1:
            return self.detector.detect(level)
        side_x, side_y = tile_side(width, len(xs), self.overlap), tile_side(height, len(ys), self.overlap)
        faces: list[Face] = []
        for y0 in ys:
            for x0 in xs:
                x1, y1 = min(x0 + side_x, width), min(y0 + side_y, height)
                for face in self.detector.detect(np.ascontiguousarray(level[y0:y1, x0:x1])):
                    fx, fy, fw, fh = (float(v) for v in face.box)
                    cut = ((x0 > 0 and fx <= 1) or (x1 < width and fx + fw >= x1 - x0 - 1)
                           or (y0 > 0 and fy <= 1) or (y1 < height and fy + fh >= y1 - y0 - 1))
                    if not cut:  # a face cut by an inner edge lies whole in a neighbour or a coarser level
                        faces.append(face.moved(x0, y0))
        return faces


def tile_side(length: int, count: int, overlap: int) -> int:
    """Side of ``count`` equal tiles covering ``length`` pixels with ``overlap`` shared between neighbours."""
    return math.ceil((length + (count - 1) * overlap) / count)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the fewest equal tiles of at most ``tile`` pixels covering ``length``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    side = tile_side(length, count, overlap)
    return [min(i * (side - overlap), length - side) for i in range(count)]


def merge(faces: list[Face], iou: float) -> list[Face]:
    """Faces with overlapping boxes (intersection over union above ``iou``) merged: the best score
    stays; the others keep their order."""
    kept: list[int] = []
    for i in sorted(range(len(faces)), key=lambda i: -faces[i].score):
        if all(_iou(faces[i].box, faces[j].box) <= iou for j in kept):
            kept.append(i)
    return [faces[i] for i in sorted(kept)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return w * h / union if union > 0 else 0.0
