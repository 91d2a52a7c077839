"""Paste-back: warp a generated face into the frame and blend it with a feathered face mask.

Only pixels under the mask change. The mask is exactly zero outside a bounded region (values
below 1/255 are cut to zero), and pixels where it is zero are never written, so everything outside
the face is bit-identical to the input frame. Work is done on the face's bounding rectangle only,
so a 4K frame costs no more than a small one.

Fail-closed masking (``fill_face``) covers more than the blend does: the whole FFHQ crop square
and the detector's box, with a solid colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .align import ffhq_quad, invert_affine

# The face ellipse in FFHQ crop coordinates (fractions of the side): centre and half-axes. It
# covers forehead to chin (y 0.15-0.89) and cheek to cheek for eyes at y = 0.475 and the mouth
# near y = 0.72; with its feathered edge it stays inside the crop, so no seam shows at its border.
MASK_CENTRE = (0.5, 0.52)
MASK_AXES = (0.33, 0.37)
FEATHER = 0.03  # Gaussian sigma of the feathered edge, as a fraction of the side


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
    """Blend ``face`` ``(R, R, 3) uint8`` (same channel order as ``frame``) into ``frame``
    ``(H, W, 3) uint8`` **in place**. ``matrix`` is the ``(2, 3)`` affine frame -> crop of size R;
    ``template`` the model's crop template (None: FFHQ crop), which places the face mask."""
    size = face.shape[0]
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
    alpha = cv2.warpAffine(face_mask(size, template), roi_matrix, roi_size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha[alpha < 1.0 / 512.0] = 0.0
    warped = cv2.warpAffine(face, roi_matrix, roi_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    roi = frame[y0:y1, x0:x1]
    # roi * (1 - alpha) + face * alpha, rounded; then copied only where alpha > 0, so that every
    # other pixel keeps its bits whatever the blend's arithmetic does there.
    blended = cv2.blendLinear(roi, warped, 1.0 - alpha, alpha)
    written = cv2.copyTo(blended, (alpha > 0).view(np.uint8), roi)
    if written is not roi:  # OpenCV reallocated instead of writing into the frame's view
        roi[...] = written
    return PasteRegion(y0, y1, x0, x1, alpha)


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
