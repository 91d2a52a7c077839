"""The artefact guard: a generated face that is not a face (a blob, a split face, a profile) is caught.

The check is YuNet (the default detector, MIT; a detector we did not train the generator against)
on the generated crop, upscaled to ``CHECK_PX`` and set on a gray border: the face passes when
YuNet's best detection scores at least ``MIN_SCORE`` and its five landmarks lie within
``MAX_LANDMARK_ERROR`` (fractions of the crop side) of the model's crop template, where the
paste-back puts them (a profile or a split face puts them elsewhere), and the mean colours of its
two cheeks differ by at most ``MAX_HALF_DIFFERENCE`` (CIE76 Lab): YuNet takes a face split into a
white and a brown half for a face, a person does not; and its head turn (``head_turn``, from those
landmarks) lies within ``MAX_TURN`` of the person's: a face turned away from the way the person faces,
pasted on the person's outline, shows its own cheek's edge, hair or background down one side. Once
pasted, the face must also show no long one-sided vertical lightness step in its sides (``split``, at
most ``MAX_SPLIT``): a split off the middle, or a streak of the generated face's own hair down one
cheek (``face.draws`` pastes, measures, and pastes another draw when it fails).

A face that fails is drawn again, deterministically, from the same key (``redraw_feeds``): first the
*mirrored* draw, the code reflected about the model's code mean (``w'' = 2 mu - w_prot``), then the
draws with only the key's part or only the person's part reflected. A reflection keeps the prior (a
Gaussian is symmetric about its mean), keeps the key's secrecy (it is a function of the key's own
material) and keeps a person's face the same from frame to frame and run to run: the same crop under
the same key gives the same draws, in the same order (faces64: its four draws with the person's head
turn kept come first, ``draws.DrawChooser.order``). The first draw that passes is pasted; if none
does, the one that fails by least (``Verdict.shortfall``) is kept (all are protected faces: nothing
of the original is pasted). ``FrameResult.redrawn`` counts the faces that were drawn again and
``FrameResult.notes`` says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..runtime.protector import Protector
from .detect import find_yunet_model

CHECK_PX = 128        # the generated face is checked at this size ...
BORDER_PX = 32        # ... on a gray border this wide (YuNet expects faces inside a scene)
MIN_SCORE = 0.75
MAX_LANDMARK_ERROR = 0.085
MAX_HALF_DIFFERENCE = 18.0
MAX_TURN = 0.1           # ``head_turn``: the generated face's may differ from the person's by this much
MAX_SPLIT = 12.0         # ``split``: the strongest long vertical lightness step (L*) ...
SIDE, EDGE = 0.28, 0.06  # ... in the columns from EDGE to SIDE of the region's width in from either edge ...
STEP = 0.05              # ... measured across this much of the width on either side of the column
SHIFT = 0.08             # ... against the mirror-image side shifted by up to this much of the width
# The cheeks, (x0, x1, y0, y1) fractions of the crop: below the eyes, beside the nose, above the mouth.
CHEEKS = ((0.22, 0.42, 0.5, 0.8), (0.58, 0.78, 0.5, 0.8))


@dataclass(frozen=True)
class Verdict:
    """The guard's view of one generated face: YuNet's ``score`` (0 when no face), the largest
    distance of its landmarks from the template (``landmark_error``, fractions of the side), the
    colour difference of its cheeks (``half_difference``, CIE76) and how far its head turn is from the
    person's (``turn``, ``head_turn``; 0 when the person's is not given); once pasted, how unevenly its two
    sides depart from its skin (``split``, ``guard.split``; None until it is pasted)."""

    score: float
    landmark_error: float
    half_difference: float
    turn: float = 0.0
    split: float | None = None

    @property
    def shortfall(self) -> float:
        """0 for a face that passes; else how far it misses, summed over the five limits (relative)."""
        return (max(0.0, MIN_SCORE - self.score) / MIN_SCORE
                + min(max(0.0, self.landmark_error - MAX_LANDMARK_ERROR) / MAX_LANDMARK_ERROR, 10.0)
                + max(0.0, self.half_difference - MAX_HALF_DIFFERENCE) / MAX_HALF_DIFFERENCE
                + min(max(0.0, self.turn - MAX_TURN) / MAX_TURN, 10.0)
                + max(0.0, (self.split or 0.0) - MAX_SPLIT) / MAX_SPLIT)

    @property
    def passed(self) -> bool:
        return self.shortfall == 0.0

    def describe(self) -> str:
        return (f"YuNet {self.score:.2f}, landmarks off by {self.landmark_error:.2f}, "
                f"cheeks {self.half_difference:.0f} apart, turned {self.turn:.2f} from the person"
                + ("" if self.split is None else f", sides {self.split:.2f} uneven"))


class ArtefactGuard:
    """YuNet on generated faces. ``template``: the model's crop template (None: FFHQ crops, whose
    landmark positions are not pinned, so only the score is checked)."""

    def __init__(self, template: tuple[tuple[float, float], ...] | None, model: str | Path | None = None) -> None:
        path = Path(model) if model is not None else find_yunet_model()
        side = CHECK_PX + 2 * BORDER_PX
        self._net = cv2.FaceDetectorYN.create(str(path), "", (side, side), 0.3, 0.3, 10)
        self.template = None if template is None else np.asarray(template, np.float64)

    def detect(self, face_rgb: np.ndarray) -> tuple[float, np.ndarray | None]:
        """YuNet's best face in ``face_rgb`` ``(R, R, 3) uint8 RGB``, upscaled to ``CHECK_PX`` on a gray
        border: (its score, its five landmarks ``(5, 2)`` in fractions of the side), or (0, None)."""
        up = cv2.resize(np.ascontiguousarray(face_rgb[..., ::-1]), (CHECK_PX, CHECK_PX), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(up, BORDER_PX, BORDER_PX, BORDER_PX, BORDER_PX, cv2.BORDER_CONSTANT,
                                    value=(128, 128, 128))
        _, rows = self._net.detect(canvas)
        if rows is None or len(rows) == 0:
            return 0.0, None
        best = rows[int(np.argmax(rows[:, 14]))]
        return float(best[14]), (best[4:14].reshape(5, 2).astype(np.float64) - BORDER_PX + 0.5) / CHECK_PX

    def check(self, face_rgb: np.ndarray, person_turn: float | None = None) -> Verdict:
        """``face_rgb`` ``(R, R, 3) uint8 RGB`` -> its ``Verdict``; ``person_turn``: the original face's
        ``head_turn`` (None: not checked)."""
        halves = half_difference(face_rgb)
        score, landmarks = self.detect(face_rgb)
        if landmarks is None:
            return Verdict(0.0, float("inf"), halves)
        turn = 0.0 if person_turn is None else abs(head_turn(landmarks) - person_turn)
        if self.template is None:
            return Verdict(score, 0.0, halves, turn)
        return Verdict(score, float(np.abs(landmarks - self.template).max()), halves, turn)


def head_turn(landmarks: np.ndarray) -> float:
    """How far a face is turned, from its five ``landmarks`` ``(5, 2)`` (eyes, nose, mouth corners; any
    units): the nose's offset from the eyes' midpoint along the line of the eyes, in interocular
    distances (0 for a frontal face; the sign says which way). Unchanged by the face's position, size
    and roll, so a frame's face and its generated face, aligned to the template, compare directly."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    across = points[1] - points[0]
    interocular = float(np.hypot(*across))
    if interocular < 1e-9:
        return 0.0
    return float(np.dot(points[2] - points[:2].mean(0), across) / interocular ** 2)


def half_difference(face_rgb: np.ndarray) -> float:
    """CIE76 distance between the mean Lab colours of the two ``CHEEKS`` of ``face_rgb`` ``(R, R, 3)``."""
    size = face_rgb.shape[0]
    lab = cv2.cvtColor(face_rgb.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)
    means = [lab[round(y0 * size):round(y1 * size), round(x0 * size):round(x1 * size)].reshape(-1, 3).mean(0)
             for x0, x1, y0, y1 in CHEEKS]
    return float(np.linalg.norm(means[0] - means[1]))


def split(pasted: np.ndarray, inside: np.ndarray, rows: tuple[float, float]) -> float:
    """The strongest long vertical edge in the sides of a pasted face: a split or a streak.

    In the rows ``rows`` (from below the eyes to below the mouth, pixels) of the paste crop ``pasted``
    ``(W, W, 3) uint8 BGR``, inside the replaced region ``inside`` ``(W, W) bool``: at each column, the
    lightness step (CIE L*, lightly blurred) between the pixels ``STEP`` of the region's width to its
    right and to its left, averaged down the rows where both lie inside the region (an edge that runs
    down the whole cheek keeps its height; an eye, a nostril or a lip corner is averaged away); then,
    for the columns from ``EDGE`` to ``SIDE`` of the width in from the left edge, that step plus the
    step at the mirror-image column on the right (a whole face darkens or lightens towards both sides
    alike: the two cancel), the largest in absolute value, for the best shift of the right side. A face split into a light and a dark part
    off its middle, or a streak of hair down one cheek, gives tens of L* units; lighting from one side,
    a few (its change is spread over the face). A split down the middle is the cheek test's (``half_difference``)."""
    r0, r1 = max(0, int(round(rows[0]))), min(inside.shape[0], int(round(rows[1])))
    band = inside[r0:r1]
    columns = np.nonzero(band.mean(0) >= 0.3)[0] if r1 > r0 else np.zeros(0, int)
    if len(columns) < 8:
        return 0.0
    left, right = int(columns[0]), int(columns[-1]) + 1
    width = right - left
    d = max(1, int(round(STEP * width)))
    lightness = cv2.cvtColor(cv2.GaussianBlur(pasted[r0:r1].astype(np.float32) * (1.0 / 255.0), (0, 0), 1.0),
                             cv2.COLOR_BGR2Lab)[..., 0]
    step = np.zeros_like(lightness)
    step[:, d:-d] = lightness[:, 2 * d:] - lightness[:, :-2 * d]
    both = np.zeros_like(band)
    both[:, d:-d] = band[:, 2 * d:] & band[:, :-2 * d]
    counted = both.sum(0)
    enough = counted >= 0.5 * (r1 - r0)
    mean_step = (step * both).sum(0) / np.maximum(counted, 1)
    xs = np.arange(left + int(np.ceil(EDGE * width)), left + int(SIDE * width) + 1)
    best = float("inf")
    # A whole face darkens (or lightens) towards both sides alike: a step at a column and the step at the
    # mirror-image column on the right cancel, once the right side is shifted by up to SHIFT of the width
    # (the region is seldom centred on the face); a streak or a split on one side does not cancel.
    shift = max(1, int(round(SHIFT * width)))
    for j in range(-shift, shift + 1):
        mirrors = left + right - 1 - xs + j
        keep = (mirrors >= 0) & (mirrors < len(mean_step))
        keep[keep] = enough[xs[keep]] & enough[mirrors[keep]]
        if keep.any():
            best = min(best, float(np.abs(mean_step[xs[keep]] + mean_step[mirrors[keep]]).max()))
    return best if best < float("inf") else 0.0


YAW_FILE = Path(__file__).resolve().parents[1] / "models" / "weights" / "faces64_yaw.json"
LOOK_FILE = Path(__file__).resolve().parents[1] / "models" / "weights" / "faces64_look.json"


@lru_cache(maxsize=1)
def faces64_yaw() -> np.ndarray:
    """The unit direction of head turn in faces64's code (``train.faces64_pose``; shipped as JSON)."""
    return np.asarray(json.loads(YAW_FILE.read_text())["direction"], np.float64)


@dataclass(frozen=True, eq=False)
class Steer:
    """Directions of a model's code that a draw sets: ``basis`` ``(D, k)`` orthonormal columns; along those
    where ``person`` ``(k,) bool`` holds, the mixed code keeps the person's component; along the others
    it is set to ``target`` ``(k,)``."""

    basis: np.ndarray
    person: np.ndarray
    target: np.ndarray


def steer_of(directions: list[np.ndarray], person: list[bool], target: list[float]) -> Steer:
    """A ``Steer`` from unit ``directions`` (each ``(D,)``), orthogonalised in the order given (each keeps
    the sign of its own direction), with the person's component kept along ``person``'s and the others set
    to ``target``."""
    stacked = np.stack([np.asarray(d, np.float64) for d in directions], 1)
    basis, _ = np.linalg.qr(stacked)
    basis = basis * np.sign(np.einsum("dk,dk->k", basis, stacked))
    return Steer(basis, np.asarray(person, bool), np.where(person, 0.0, np.asarray(target, np.float64)))


@lru_cache(maxsize=1)
def faces64_steer() -> Steer:
    """faces64's draws 4-7: the person's head turn (``faces64_yaw``) kept; lighting, brightness, the
    guard's miss and the mouth (``train.faces64_look``, shipped as JSON) set to the targets fitted with them."""
    look = json.loads(LOOK_FILE.read_text())
    names = list(look["targets"])
    return steer_of([faces64_yaw(), *(np.asarray(look["directions"][n], np.float64) for n in names)],
                    [True] + [False] * len(names), [0.0, *(float(look["targets"][n]) for n in names)])


def steered(feeds: dict[str, np.ndarray], steer: Steer) -> dict[str, np.ndarray]:
    """``feeds`` whose mixed code ``w' = w M + b`` is steered: ``w'' = w' (I - P) + w B K B^T + t B^T`` for
    ``P = B B^T`` (``B``: ``steer.basis``), ``K`` the diagonal of ``steer.person`` and ``t``
    ``steer.target``: along the person's directions the person's component, along the others the target,
    elsewhere the key's map unchanged. Folded into the affine map as ``M'' = M (I - P) + B K B^T``,
    ``b'' = b (I - P) + t B^T`` (the radius guard then rescales the whole code, those components too)."""
    matrix = feeds["key_matrix"].astype(np.float64)
    offset = feeds["key_offset"].astype(np.float64)
    basis = steer.basis
    projector = basis @ basis.T
    return {**feeds,
            "key_matrix": (matrix - matrix @ projector + (basis * steer.person) @ basis.T).astype(np.float32),
            "key_offset": (offset - offset @ projector + steer.target @ basis.T).astype(np.float32)}


def redraw_feeds(protector: Protector) -> list[dict[str, np.ndarray]]:
    """The key's other draws, in the order they are tried: mixer feeds for the code reflected about
    the mean (``key_matrix = -M``, ``key_offset = 2 mu - b``), then with only the key's fill reflected
    (``M``, ``2 (mu - mu M) - b``), then with only the person's kept part reflected (``-M``,
    ``b + 2 mu M``). ``b = mu - mu M + f`` (``keymaterial``): the three are the sign changes of the
    person's part ``(w - mu) M`` and of the key's fill ``f``; for ``rotate``, whose fill is 0, the
    last two repeat the first two.

    faces64 (one code for the whole face: the mixer draws a new head pose, lighting and exposure too) has
    four more (draws 4-7): the key's own draw and the three reflections, ``steered`` by ``faces64_steer``
    (the person's head turn kept; lit evenly, exposed well, well inside the guard's limits, the mouth no
    wider open than on the average face); paste-back tries those first (``draws.DrawChooser.order``)."""
    mean = protector.info.stats().mean.astype(np.float64)
    matrix = protector.key_feeds["key_matrix"].astype(np.float64)
    offset = protector.key_feeds["key_offset"].astype(np.float64)
    mean_map = mean @ matrix
    draws = [(-matrix, 2.0 * mean - offset), (matrix, 2.0 * (mean - mean_map) - offset), (-matrix, offset + 2.0 * mean_map)]
    reflected = [{**protector.key_feeds, "key_matrix": m.astype(np.float32), "key_offset": b.astype(np.float32)}
                 for m, b in draws]
    if not has_head_turn_draws(protector.info) or len(mean.reshape(-1)) != len(faces64_yaw()):
        return reflected
    steer = faces64_steer()
    return [*reflected, steered(protector.key_feeds, steer), *(steered(f, steer) for f in reflected)]


def has_head_turn_draws(info: object) -> bool:
    """Whether a model's key gives draws with the person's head turn kept (``redraw_feeds``): faces64's
    real weights (seeded random weights draw noise)."""
    return getattr(info, "name", "") == "faces64" and not getattr(info, "is_random", False)


def mirrored_feeds(protector: Protector) -> dict[str, np.ndarray]:
    """The key's mirrored draw (the first of ``redraw_feeds``): ``key_matrix = -M``, ``key_offset = 2 mu - b``."""
    return redraw_feeds(protector)[0]
