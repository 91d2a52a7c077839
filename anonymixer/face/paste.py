"""Paste-back: the generated face goes back into the frame, coloured, placed and cloned in without a seam.

``paste_generated`` (the default ``PasteStyle``), for one face, in a *paste crop* (a square on the
face, in the model's crop frame, a little larger than the crop: ``WINDOW``):

1. the original face is warped into the paste crop, the generated face too, widened a little and its
   chin drawn out, just enough that it reaches past the original's jaw and chin (``cover_scale``:
   the generated crop cuts its own chin, real chins lie below it);
2. the replaced region is the original's outline (``region.face_outline``: dlib's 68 points or a fit to
   the five landmarks), grown by a margin, where the generated face is (inside its crop and its own
   outline, ``region.MEAN_OUTLINE`` placed by the template: its hair and background stay out);
3. the generated face takes the original's colour statistics in its inner face (``blend.match_colour``);
4. what of the generated face is not skin at the region's edge (its own background or hair, inside a
   wide outline) becomes its skin (``blend.fill_off_skin``), then a smooth correction brings it to the
   original's colours at the region's border (``blend.membrane``, or OpenCV's exact Poisson clone
   ``blend.poisson``);
5. the result goes back through the inverse warp, blended by the region feathered *inside* its border.

``PasteStyle("oval", ...)`` is what paste-back did before issue 23 (``paste_face`` with the fixed
feathered ellipse ``face_mask``), kept to measure against (``benchmarks/pasteback_realism.py``).

Only pixels under the alpha change. The alpha is exactly zero outside a bounded region (values below
1/512 are cut to zero), and pixels where it is zero are never written, so everything outside the
face is bit-identical to the input frame. Work is done on the face's bounding rectangle only, so a
4K frame costs no more than a small one.

Fail-closed masking (``fill_face``) covers more than the blend does: the whole FFHQ crop square
and the detector's box, with a solid colour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from . import blend
from .align import FFHQ_EYE_FRACTIONS, apply_affine, ffhq_quad, invert_affine, warp_crop
from .guard import split
from .region import MEAN_OUTLINE, inner_hull, polygon_mask, region_polygon

# The face ellipse in FFHQ crop coordinates (fractions of the side): centre and half-axes. It
# covers forehead to chin (y 0.15-0.89) and cheek to cheek for eyes at y = 0.475 and the mouth
# near y = 0.72; with its feathered edge it stays inside the crop, so no seam shows at its border.
MASK_CENTRE = (0.5, 0.52)
MASK_AXES = (0.33, 0.37)
FEATHER = 0.03  # Gaussian sigma of the feathered edge, as a fraction of the side

# The paste crop: the model's crop frame from WINDOW[0] to WINDOW[1] (fractions of the crop side) on
# both axes, at WINDOW_PX pixels per crop side (at least 2 generated pixels per paste-crop pixel...
# for faces64: 64 px -> 80 px per side, 128 px in all).
WINDOW = (-0.3, 1.3)
WINDOW_PX = 1.25
MAX_WIDEN = 1.1        # the generated face is widened at most this much to cover the jaw ...
MAX_CHIN = 2.0         # ... and its chin (the rows below the mouth) drawn out at most this much
COVER_MARGIN = 0.08    # ... to reach this far (fraction of the crop) beyond the original's
FEATHER_INSIDE = 0.06  # the alpha's feather, inside the region, in interocular distances (sigma)


@dataclass(frozen=True)
class PasteStyle:
    """How a generated face goes back: ``region`` ``"outline"`` (the original's jaw and brows) or
    ``"oval"`` (the fixed ellipse of before issue 23); ``colour``: match the original's Lab statistics;
    ``blend``: ``"membrane"`` (push-pull seamless clone), ``"poisson"`` (OpenCV's seamlessClone) or
    ``"feather"`` (alpha only); ``guard``: check that the generated face is a face (``face.guard``);
    ``dlib``: the 68-point outline where dlib is installed (else the 5-point fit); ``skin_border``: the
    membrane is drawn from the border where the original is skin (``blend.membrane``); ``edge_fill``: what
    of the generated face is not skin at the region's edge (its own background or hair) becomes its skin
    (``blend.fill_off_skin``), before the membrane."""

    region: str = "outline"
    colour: bool = True
    blend: str = "membrane"
    guard: bool = True
    dlib: bool = True
    skin_border: bool = True
    edge_fill: bool = True


PASTE_STYLES = {
    "default": PasteStyle(),
    "legacy": PasteStyle(region="oval", colour=False, blend="feather", guard=False),
    "poisson": PasteStyle(blend="poisson"),
    "no-colour": PasteStyle(colour=False),
    "no-blend": PasteStyle(blend="feather"),
    "no-guard": PasteStyle(guard=False),
    "five-point": PasteStyle(dlib=False),
    "whole-border": PasteStyle(skin_border=False),
    "no-edge-fill": PasteStyle(edge_fill=False),
}


def mask_ellipse(template: tuple[tuple[float, float], ...] | None) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centre and half-axes of the face ellipse, fractions of the crop side.

    FFHQ crops: the constants above. A model's crop template: the same proportions to its landmarks
    (half-axes 1.32x the interocular distance across, 1.33x the eye-to-mouth distance down, centre
    0.18 of the way from the eyes to the mouth), shrunk where needed so that the feathered edge
    (2.5 sigma) stays inside the crop, where the generated face is.
    """
    if template is None:
        return MASK_CENTRE, MASK_AXES
    points = np.asarray(template, np.float64).reshape(5, 2)
    eyes, mouth = points[:2].mean(0), points[3:].mean(0)
    interocular = float(np.hypot(*(points[1] - points[0])))
    eye_to_mouth = float(mouth[1] - eyes[1])
    cx, cy = float(points[:, 0].mean()), float(eyes[1] + 0.18 * eye_to_mouth)
    margin = 2.5 * FEATHER
    ax = min(1.32 * interocular, cx - margin, 1.0 - cx - margin)
    ay = min(1.33 * eye_to_mouth, cy - margin, 1.0 - cy - margin)
    return (cx, cy), (ax, ay)


@lru_cache(maxsize=8)
def face_mask(size: int, template: tuple[tuple[float, float], ...] | None = None) -> np.ndarray:
    """``(size, size) float32`` in [0, 1]: 1 on the face, a feathered edge, exactly 0 beyond it.

    ``template``: the model's crop template (see ``mask_ellipse``); None for FFHQ crops.
    """
    scale = 1024  # draw at sub-pixel precision: ellipse coordinates in 1/1024 px
    ellipse = np.zeros((size, size), np.float32)
    (mcx, mcy), (max_, may) = mask_ellipse(template)
    centre = (round(mcx * size * scale), round(mcy * size * scale))
    axes = (round(max_ * size * scale), round(may * size * scale))
    cv2.ellipse(ellipse, centre, axes, 0, 0, 360, 1.0, thickness=-1, lineType=cv2.LINE_AA, shift=10)
    sigma = FEATHER * size
    mask: np.ndarray = cv2.GaussianBlur(ellipse, (0, 0), sigma)
    mask[mask < 1.0 / 255.0] = 0.0
    mask[mask > 1.0 - 1.0 / 512.0] = 1.0  # the blur's rounding leaves 0.9999999 on the face
    mask.setflags(write=False)
    return mask


@dataclass
class PasteRegion:
    """Where a paste changed the frame: ``alpha`` ``(y1 - y0, x1 - x0) float32`` over rows
    ``y0:y1`` and columns ``x0:x1``. Pixels outside, or where ``alpha == 0``, are untouched."""

    y0: int
    y1: int
    x0: int
    x1: int
    alpha: np.ndarray
    measure_split: Callable[[], float] | None = field(default=None, repr=False, compare=False)

    @property
    def split(self) -> float:
        """The pasted face's one-sided vertical step (``guard.split``), measured when asked (0: not a
        generated face's paste)."""
        return 0.0 if self.measure_split is None else self.measure_split()

    def full_mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """``(H, W) bool`` of the frame: True where the paste may have changed a pixel."""
        mask = np.zeros(shape[:2], bool)
        mask[self.y0:self.y1, self.x0:self.x1] = self.alpha > 0
        return mask


def _bounds(points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Integer rectangle (y0, y1, x0, x1) around ``(N, 2)`` points, one pixel of margin, clipped."""
    height, width = shape[:2]
    x0, y0 = np.floor(points.min(0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(0)).astype(int) + 2
    return max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)


def paste_face(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray,
               template: tuple[tuple[float, float], ...] | None = None) -> PasteRegion:
    """The legacy paste (``PasteStyle.region == "oval"``): blend ``face`` ``(R, R, 3) uint8`` (same
    channel order as ``frame``) into ``frame`` ``(H, W, 3) uint8`` **in place** under the fixed
    feathered ellipse ``face_mask``. ``matrix`` is the ``(2, 3)`` affine frame -> crop of size R;
    ``template`` the model's crop template (None: FFHQ crop), which places the ellipse."""
    return blend_into(frame, face, face_mask(face.shape[0], template), matrix)


def blend_into(frame: np.ndarray, image: np.ndarray, mask: np.ndarray, matrix: np.ndarray) -> PasteRegion:
    """``frame * (1 - alpha) + image * alpha`` **in place**, where ``image`` ``(S, S, 3) uint8`` and its
    ``mask`` ``(S, S) float32`` in [0, 1] go into the frame through the inverse of ``matrix`` (the
    ``(2, 3)`` affine frame -> that S-pixel crop) and alpha is the warped mask. Only pixels where
    alpha > 0 are written."""
    size = image.shape[0]
    to_frame = invert_affine(matrix)
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    corners = corners @ to_frame[:, :2].T + to_frame[:, 2]
    y0, y1, x0, x1 = _bounds(corners, frame.shape)
    if y1 <= y0 or x1 <= x0:
        return PasteRegion(0, 0, 0, 0, np.zeros((0, 0), np.float32))
    # Crop -> ROI pixels: the inverse warp, shifted to the ROI's origin.
    roi_matrix = to_frame.copy()
    roi_matrix[:, 2] -= (x0, y0)
    roi_size = (x1 - x0, y1 - y0)
    alpha = cv2.warpAffine(mask, roi_matrix, roi_size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha[alpha < 1.0 / 512.0] = 0.0
    warped = cv2.warpAffine(image, roi_matrix, roi_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    roi = frame[y0:y1, x0:x1]
    # roi * (1 - alpha) + face * alpha, rounded; then copied only where alpha > 0, so that every
    # other pixel keeps its bits whatever the blend's arithmetic does there.
    blended = cv2.blendLinear(roi, warped, 1.0 - alpha, alpha)
    written = cv2.copyTo(blended, (alpha > 0).view(np.uint8), roi)
    if written is not roi:  # OpenCV reallocated instead of writing into the frame's view
        roi[...] = written
    return PasteRegion(y0, y1, x0, x1, alpha)


def quad_bounds(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the frame rectangle around a face's FFHQ square, which holds its paste."""
    return _bounds(ffhq_quad(landmarks), shape)


def fill_face(frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray | None,
              color: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Cover a face **in place** with a solid ``color``: its FFHQ crop square and its detector
    ``box`` (x, y, w, h). Used when any stage after detection fails for that face."""
    try:
        quad = ffhq_quad(landmarks)
        polygon = np.rint(quad * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillConvexPoly(frame, polygon, color, lineType=cv2.LINE_8, shift=4)
    except (ValueError, cv2.error):  # degenerate landmarks: the box must do
        if box is None:
            raise
    if box is not None:
        x, y, w, h = (float(v) for v in box)
        y0, y1, x0, x1 = _bounds(np.array([[x, y], [x + w, y + h]]), frame.shape)
        frame[y0:y1, x0:x1] = color


def _eye_centre(template: tuple[tuple[float, float], ...] | None) -> np.ndarray:
    """Where the eyes' midpoint sits in the crop, fractions of its side."""
    eyes = FFHQ_EYE_FRACTIONS if template is None else np.asarray(template, np.float64)[:2]
    return np.asarray(eyes, np.float64).mean(0)


def _mouth_row(template: tuple[tuple[float, float], ...] | None, eyes: np.ndarray) -> float:
    """The row (fraction of the crop) below which the lower face is stretched: just under the mouth."""
    mouth = (np.asarray(template, np.float64)[3:].mean(0)[1] if template is not None
             else eyes[1] + 0.55 * (1.0 - eyes[1]))
    return float(mouth + 0.03)


def cover_scale(outline_crop: np.ndarray, eyes: np.ndarray, chin_from: float) -> tuple[float, float]:
    """``(sx, sy)``: how the generated face is stretched to cover the original's jaw and chin
    (``outline_crop``, fractions): ``sx`` widens it about the eyes' midpoint ``eyes`` until its jaw
    (where ``MEAN_OUTLINE`` puts it) is ``COVER_MARGIN`` beyond the original's (at most ``MAX_WIDEN``);
    ``sy`` stretches only the chin, the rows below ``chin_from``, until the crop's bottom edge (which
    cuts the generated chin) is ``COVER_MARGIN`` below the original's chin (at most ``MAX_CHIN``). The
    eyes, nose and mouth keep their proportions, which is what a face detector looks at."""
    jaw, mean_jaw = outline_crop[:17], MEAN_OUTLINE[:17]
    need_x = (np.abs(jaw[:, 0] - eyes[0]).max() + COVER_MARGIN) / np.abs(mean_jaw[:, 0] - eyes[0]).max()
    need_y = (jaw[:, 1].max() + COVER_MARGIN - chin_from) / max(1.0 - chin_from, 1e-6)
    return float(np.clip(need_x, 1.0, MAX_WIDEN)), float(np.clip(need_y, 1.0, MAX_CHIN))


def paste_generated(frame: np.ndarray, original: np.ndarray, generated: np.ndarray, matrix: np.ndarray,
                    landmarks: np.ndarray, outline: np.ndarray | None,
                    template: tuple[tuple[float, float], ...] | None, style: PasteStyle = PasteStyle()) -> PasteRegion:
    """Put ``generated`` ``(R, R, 3) uint8 BGR`` over one face of ``frame`` ``(H, W, 3) uint8 BGR``
    **in place** (steps in the module doc). ``original``: the input frame (unpasted, same shape);
    ``matrix``: the ``(2, 3)`` affine frame -> the R-pixel crop; ``landmarks`` ``(5, 2)`` and
    ``outline`` ``(27, 2)`` (``region.face_outline``; None only for the oval) in frame pixels;
    ``template``: the model's crop template (None: FFHQ)."""
    if style.region == "oval":
        return paste_face(frame, generated, matrix, template)
    if outline is None:
        raise ValueError("an outline region needs the face's outline (region.face_outline)")
    size = generated.shape[0]
    lo, hi = WINDOW
    width = int(round((hi - lo) * size * WINDOW_PX / 8.0)) * 8
    # frame -> paste crop: frame -> crop pixels -> fractions -> paste pixels
    k = width / ((hi - lo) * size)
    to_paste = np.asarray(matrix, np.float64) * k
    to_paste[:, 2] += 0.5 * k - lo * width / (hi - lo) - 0.5
    outline_paste = apply_affine(to_paste, outline)
    fractions = (outline_paste + 0.5) / width * (hi - lo) + lo
    eyes = _eye_centre(template)
    chin_from = _mouth_row(template, eyes)
    # FFHQ crops hold the whole head; a tighter template (faces64's) cuts the chin: only then stretch.
    sx, sy = cover_scale(fractions, eyes, chin_from) if template is not None else (1.0, 1.0)
    # generated pixels -> fractions -> widened about the eyes -> paste pixels; then the chin's rows
    f = width / (hi - lo)
    affine = np.array([[sx * f / size, 0.0, f * (eyes[0] * (1 - sx) + sx * 0.5 / size - lo) - 0.5],
                       [0.0, f / size, f * (0.5 / size - lo) - 0.5]])
    chin_row = (chin_from - lo) * f - 0.5  # paste pixels

    def place(points: np.ndarray) -> np.ndarray:
        """Generated pixels ``(K, 2)`` -> paste pixels."""
        out = apply_affine(affine, points)
        below = out[:, 1] > chin_row
        out[below, 1] = chin_row + sy * (out[below, 1] - chin_row)
        return out

    old_face = warp_crop(original, to_paste, width)
    # The region: the outline's polygon, where the generated face is (one generated pixel in from its
    # edge), within the fail-closed fill's square (so that ``pipeline.changed_region`` holds it).
    region = polygon_mask(region_polygon(outline_paste), width)
    edge = np.array([[0.5, 0.5], [size - 1.5, 0.5], [size - 1.5, size - 1.5], [0.5, size - 1.5]])
    region &= polygon_mask(place(edge), width)
    if template is not None:  # ... and the generated face's own (its hair and background stay out)
        region &= polygon_mask(region_polygon(place(MEAN_OUTLINE * size - 0.5)), width)
    region &= polygon_mask(apply_affine(to_paste, ffhq_quad(landmarks)), width)
    inside = region.astype(bool)
    old_inner = polygon_mask(inner_hull(apply_affine(to_paste, landmarks)), width).astype(bool) & inside
    old_skin = blend.skin(blend.lab(old_face[old_inner]))   # Lab pixels: only the inner face is converted
    if style.colour:  # on the generated pixels (fewer than the paste crop's), before the warp
        points = (np.asarray(template, np.float64) * size - 0.5 if template is not None
                  else apply_affine(matrix, landmarks))
        generated = blend.match_colour(generated, polygon_mask(inner_hull(points), size).astype(bool), old_skin)
    new_face = cv2.warpAffine(generated, affine, (width, width), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if sy > 1.0:  # the chin's rows, drawn out: paste row r takes row chin_row + (r - chin_row) / sy
        rows = np.arange(width, dtype=np.float32)
        source = np.where(rows > chin_row, chin_row + (rows - chin_row) / sy, rows).astype(np.float32)
        new_face = cv2.remap(new_face, np.tile(rows, (width, 1)), np.tile(source[:, None], (1, width)),
                             cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if style.blend == "membrane":
        skin_lab = new_skin_lab = None
        if style.skin_border and len(old_skin) >= 16:   # each face's skin colour, in the same inner face
            skin_lab = np.median(old_skin, axis=0)
            new_skin_lab = np.median(blend.skin(blend.lab(new_face[old_inner])), axis=0)
        if style.edge_fill and new_skin_lab is not None:   # its own background at its edge: its skin instead
            new_face = blend.fill_off_skin(new_face, inside, new_skin_lab)
        new_face = blend.membrane(new_face, old_face, inside, skin_lab, new_skin_lab)
    elif style.blend == "poisson":
        new_face = blend.poisson(new_face, old_face, inside)
    interocular = float(np.linalg.norm(apply_affine(to_paste, landmarks[1:2]) - apply_affine(to_paste, landmarks[0:1])))
    sigma = max(0.8, FEATHER_INSIDE * interocular)
    shrunk = cv2.erode(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * round(1.5 * sigma) + 1,) * 2))
    alpha = cv2.GaussianBlur(shrunk.astype(np.float32), (0, 0), sigma)
    alpha[alpha < 1.0 / 255.0] = 0.0
    alpha[alpha > 1.0 - 1.0 / 512.0] = 1.0
    alpha[~inside] = 0.0
    composite = np.where(inside[..., None], new_face, old_face)
    cheeks = (float((eyes[1] + 0.05 - lo) * f - 0.5), float((chin_from + 0.1 - lo) * f - 0.5))  # rows, paste pixels
    pasted = blend_into(frame, composite, alpha, to_paste)
    pasted.measure_split = lambda: split(composite, alpha >= 0.5, cheeks)   # only the guard asks
    return pasted
