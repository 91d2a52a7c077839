"""FFHQ-style alignment: five landmarks -> one affine warp to a square face crop, and back.

The FFHQ recipe (Karras et al., ``ffhq-dataset``'s ``recreate_aligned_images``) places an oriented
square on the face from the eye centres and mouth corners alone::

    eye_avg      = (eye_r + eye_l) / 2            eye_to_eye   = eye_l - eye_r
    mouth_avg    = (mouth_r + mouth_l) / 2        eye_to_mouth = mouth_avg - eye_avg
    x  = eye_to_eye - rot90(eye_to_mouth)         (the face's horizontal axis)
    x *= max(2.0 * |eye_to_eye|, 1.8 * |eye_to_mouth|) / |x|
    y  = rot90(x)                                 (same length, pointing to the chin)
    c  = eye_avg + 0.1 * eye_to_mouth             (centre of the square)
    quad = c - x - y, c - x + y, c + x + y, c + x - y   (top-left, bottom-left, bottom-right, top-right)

(``eye_r`` is the subject's right eye, on the image's left; FFHQ calls it ``eye_left``.) The quad
maps onto the crop's outer corners; since the quad is a square the warp is a similarity, stored as
one ``(2, 3) float64`` affine matrix from frame pixels to crop pixels (pixel centres at integers).

Where the eyes land (the template): for a frontal face with interocular distance ``d`` and
eye-to-mouth distance ``m <= d / 0.9``, the square has half-side ``2 d``; the eye centres land at
``(0.375 S, (0.5 - 0.025 m/d) S)`` and ``(0.625 S, ...)``, minus half a pixel. For ``m = d`` and
``S = 256`` that is (95.5, 121.1) and (159.5, 121.1); real faces (``m/d`` in 0.8-1.1) stay within
a pixel of it vertically. ``template_eye_centres`` returns these positions.

Models trained on other crops (faces64's DCGAN frames its faces tighter) carry a *crop template*
instead: where the five landmarks sit, as fractions of the crop side. Their alignment is the
least-squares similarity (``umeyama_similarity``) from the detected landmarks to the template.
``alignment_affine`` picks one or the other; everything after it (warp, paste-back) is shared.
"""

from __future__ import annotations

import cv2
import numpy as np

# Eye centres in the crop as fractions of its side, for a frontal face with m = d (see above).
FFHQ_EYE_FRACTIONS = np.array([[0.375, 0.475], [0.625, 0.475]])
MAX_ROLL = 30.0   # degrees: a face rolled more is turned upright for dlib's predictors (``dlib_upright``)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square in frame pixels: ``(5, 2)`` landmarks -> ``(4, 2) float64`` corners
    (top-left, bottom-left, bottom-right, top-right)."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_r, eye_l, _, mouth_r, mouth_l = lm
    eye_avg = (eye_r + eye_l) * 0.5
    eye_to_eye = eye_l - eye_r
    eye_to_mouth = (mouth_r + mouth_l) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1.0, 1.0]
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError("degenerate face landmarks: eyes and mouth coincide")
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) / norm
    y = np.flipud(x) * [-1.0, 1.0]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def ffhq_affine(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``(2, 3) float64`` affine from frame pixels to a ``size x size`` FFHQ crop."""
    quad = ffhq_quad(landmarks)
    corners = np.array([[0.0, 0.0], [0.0, size], [size, size]]) - 0.5  # outer edges, pixel-centre coords
    src = np.hstack([quad[:3], np.ones((3, 1))])
    return np.linalg.solve(src, corners).T


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    ``src (K, 2)`` onto ``dst (K, 2)``, as a ``(2, 3) float64`` affine (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    var = (s * s).sum() / len(src)
    scale = (sigma * sign).sum() / var if var > 0 else 1.0
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def similarity_align(image_bgr: np.ndarray, landmarks5: np.ndarray, template: np.ndarray,
                     size: int) -> np.ndarray:
    """Warp ``(H, W, 3) uint8`` so that ``landmarks5 (5, 2)`` land on ``template (5, 2)``;
    returns the ``(size, size, 3) uint8`` crop (as InsightFace's ``norm_crop``)."""
    matrix = umeyama_similarity(landmarks5, template)
    return cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)


def template_affine(landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """``(2, 3) float64`` affine from frame pixels to a ``size x size`` crop in which the five
    ``landmarks`` best fit ``template`` (``(5, 2)`` fractions of the side; pixel centres at integers)."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.all(np.isfinite(lm)) or np.ptp(lm, axis=0).max() < 1e-6:
        raise ValueError("degenerate face landmarks: all five coincide")
    matrix = umeyama_similarity(lm, np.asarray(template, np.float64).reshape(5, 2) * size - 0.5)
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:, :2])) < 1e-12:
        raise ValueError("degenerate face landmarks: no similarity fits the crop template")
    return matrix


def alignment_affine(landmarks: np.ndarray, size: int, template: np.ndarray | None = None) -> np.ndarray:
    """Frame -> crop affine: the FFHQ quad (``template`` None) or a model's crop template."""
    return ffhq_affine(landmarks, size) if template is None else template_affine(landmarks, template, size)


def resize_affine(matrix: np.ndarray, size: int, new_size: int) -> np.ndarray:
    """The same alignment for a crop of ``new_size`` instead of ``size`` pixels."""
    scale = new_size / size
    out = np.asarray(matrix, np.float64) * scale
    out[:, 2] += 0.5 * scale - 0.5
    return out


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """``(2, 3)`` inverse: crop pixels -> frame pixels."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points through a ``(2, 3)`` affine."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


def template_eye_centres(size: int) -> np.ndarray:
    """``(2, 2)`` where FFHQ alignment puts the eye centres (subject's right, then left) in a
    ``size``-pixel crop, for a frontal face with equal interocular and eye-to-mouth distances."""
    return FFHQ_EYE_FRACTIONS * size - 0.5


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int,
               template: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Warp one face to a ``(size, size, C)`` crop; returns ``(crop, affine frame->crop)``.

    ``template``: the model's crop template (``(5, 2)`` fractions), or None for FFHQ alignment.
    The warp is ``warp_crop``'s.
    """
    matrix = alignment_affine(landmarks, size, template)
    return warp_crop(image, matrix, size), matrix


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``(size, size, C)``: ``image`` through the ``(2, 3)`` frame -> crop affine ``matrix``.

    Borders are reflected, as FFHQ pads with reflections. A face larger than twice the crop is
    first shrunk with an area filter to the crop's own scale (FFHQ shrinks too), so that the
    bilinear warp that follows works at about 1:1 and does not alias.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # crop pixels per frame pixel
    quad = apply_affine(invert_affine(matrix), np.array([[0.0, 0.0], [0.0, size], [size, size], [size, 0.0]]) - 0.5)
    height, width = image.shape[:2]
    # Shrink only the part of the frame under the quad (plus a margin for the filters).
    x0, y0 = np.floor(quad.min(0)).astype(int) - 4
    x1, y1 = np.ceil(quad.max(0)).astype(int) + 5
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if scale >= 0.5 or x1 - x0 < 2 or y1 - y0 < 2:
        return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    roi = image[y0:y1, x0:x1]
    small = cv2.resize(roi, (max(2, round(roi.shape[1] * scale)), max(2, round(roi.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    # small pixel (u, v) <- frame pixel (x0 + (u + 0.5) * sx - 0.5, ...), sx = roi width / small width
    sx, sy = roi.shape[1] / small.shape[1], roi.shape[0] / small.shape[0]
    to_frame = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return cv2.warpAffine(small, np.asarray(matrix) @ to_frame, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def dlib_square(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The box dlib's shape predictors want, like its HOG detector's (checked against the HOG boxes of
    the packaged photos): ``(centre (2,), side)``, a square centred between the eyes and the mouth,
    1.1 x (eye distance + eye-to-mouth distance) wide, from five ``landmarks`` ``(5, 2)``."""
    p = np.asarray(landmarks, np.float64).reshape(5, 2)
    eyes, mouth = p[:2].mean(0), p[3:].mean(0)
    side = 1.1 * (np.linalg.norm(p[1] - p[0]) + np.linalg.norm(mouth - eyes))
    return (eyes + mouth) / 2.0, float(side)


def dlib_upright(image_bgr: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """dlib's shape predictors are trained on roughly upright faces. For a face rolled more than
    ``MAX_ROLL`` (a sideways photo, a tilted head): ``(window, to_window)``, a window of twice its
    ``dlib_square`` about it with the eyes level, and the ``(2, 3)`` affine frame -> window (the caller
    measures there and maps points back with ``invert_affine``); None for a face upright enough as it
    is. On a sideways Grace Hopper, dlib's 68 points strayed 1.85 interocular distances from the
    5-point fit without this, 0.23 with it (upright: 0.19)."""
    p = np.asarray(landmarks, np.float64).reshape(5, 2)
    across = p[1] - p[0]
    if abs(np.degrees(np.arctan2(across[1], across[0]))) <= MAX_ROLL:
        return None
    centre, side = dlib_square(p)
    cos, sin = across / max(float(np.linalg.norm(across)), 1e-9)
    window = int(np.ceil(2.0 * side)) + 1
    to_window = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])   # the eyes along +x
    to_window[:, 2] = window / 2.0 - to_window[:, :2] @ centre
    turned = cv2.warpAffine(image_bgr, to_window, (window, window), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return turned, to_window
