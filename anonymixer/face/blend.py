"""Colour and seam: bring the generated face to the original's tone, then clone it in without a seam.

Both work in the paste crop (``paste.paste_generated``), where the original face and the generated
one lie on the same pixel grid, ``(W, W, 3) uint8 BGR``:

- ``match_colour``: per channel in CIE Lab, the generated face's mean and spread inside its inner
  face are moved to the original's (Reinhard et al. 2001). The spread's ratio is bounded, so that
  a gray photo gives a gray face and a flat face is not blown up.
- ``membrane``: the seamless clone of Pérez et al. (2003) asks for the smooth correction that
  brings the new face to the original at the region's border; here it is interpolated from the
  border inwards by push-pull (normalised convolution over an image pyramid, Gortler et al. 1996),
  which approximates the Poisson membrane at a fraction of its cost. ``poisson`` is OpenCV's exact
  ``seamlessClone`` (normal clone), kept to measure against.
"""

from __future__ import annotations

import cv2
import numpy as np

L_SPREAD = (0.6, 1.5)    # bounds of the lightness spread ratio
OFF_SKIN = 25.0          # ``membrane``: a border pixel this far (CIE76) from the original's skin ...
OFF_SKIN_WEIGHT = 0.1    # ... weighs this much in the field
AB_SPREAD = (0.0, 1.0)   # bounds of the chroma spread ratios (0: a gray photo gives a gray face; never
                         # more saturated than the generated face, which blotches)


def lab(image_bgr: np.ndarray) -> np.ndarray:
    """``(..., 3) uint8 BGR`` (an image, or pixels ``(N, 3)``) -> ``float32`` CIE Lab, same shape."""
    shape = image_bgr.shape
    if image_bgr.size == 0:   # no pixels (an empty region): OpenCV refuses an empty image
        return np.zeros(shape, np.float32)
    pixels = image_bgr.reshape(1, -1, 3).astype(np.float32) * (1.0 / 255.0)   # one row: OpenCV works per row
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2Lab).reshape(shape)


def _far(pixels_lab: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``(N,) bool``: the Lab pixels ``(N, 3)`` farther than ``OFF_SKIN`` (CIE76) from ``colour``."""
    d = pixels_lab - colour
    return np.asarray(np.einsum("nc,nc->n", d, d) > OFF_SKIN ** 2)


def skin(pixels_lab: np.ndarray) -> np.ndarray:
    """The skin of an inner face: those of its Lab pixels ``(N, 3)`` within ``OFF_SKIN`` (CIE76) of their
    median colour (glasses' frames and lenses, eyes, brows, lips, teeth and shadows left out), or all of
    them when fewer than 16 are."""
    if len(pixels_lab) < 16:
        return pixels_lab
    near = ~_far(pixels_lab, np.median(pixels_lab, axis=0))
    return pixels_lab[near] if int(near.sum()) >= 16 else pixels_lab


def match_colour(generated: np.ndarray, generated_inner: np.ndarray, target_skin: np.ndarray) -> np.ndarray:
    """``generated`` ``(W, W, 3) uint8 BGR`` with its skin's Lab mean and spread (``skin`` of the pixels in
    the boolean mask ``generated_inner`` ``(W, W)``) moved to those of ``target_skin`` ``(N, 3)`` (Lab:
    the original's ``skin``). Skin to skin: a dark pair of glasses or an open mouth on either face does
    not darken or redden the other."""
    lab_g = lab(generated)
    g = skin(lab_g[generated_inner])
    if len(g) < 16 or len(target_skin) < 16:
        return generated
    mean_g, mean_o = g.mean(0), target_skin.mean(0)
    ratio = target_skin.std(0) / np.maximum(g.std(0), 1e-3)
    ratio[0] = np.clip(ratio[0], *L_SPREAD)
    ratio[1:] = np.clip(ratio[1:], *AB_SPREAD)
    moved = (lab_g - mean_g) * ratio + mean_o
    moved[..., 0] = np.clip(moved[..., 0], 0.0, 100.0)
    bgr = cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_Lab2BGR)
    return np.clip(np.rint(bgr * 255.0), 0, 255).astype(np.uint8)


def _push_pull(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fill ``values`` ``(H, W, C) float32`` from where ``weights`` ``(H, W)`` > 0 into everywhere,
    smoothly: pull (weighted pyramid down), then push (coarse estimate where fine weights are low)."""
    levels = [(values * weights[..., None], weights)]
    while min(levels[-1][1].shape) > 4:
        v, w = levels[-1]
        levels.append((cv2.pyrDown(v), cv2.pyrDown(w)))
    v, w = levels[-1]
    estimate = v / np.maximum(w, 1e-6)[..., None]
    for v, w in reversed(levels[:-1]):
        up = cv2.pyrUp(estimate, dstsize=(w.shape[1], w.shape[0]))
        confidence = np.minimum(w * 4.0, 1.0)[..., None]
        estimate = v / np.maximum(w, 1e-6)[..., None] * confidence + up * (1.0 - confidence)
    return estimate


def membrane(generated: np.ndarray, original: np.ndarray, region: np.ndarray,
             skin_lab: np.ndarray | None = None, generated_skin_lab: np.ndarray | None = None) -> np.ndarray:
    """``generated`` plus the smooth field that equals ``original - generated`` just outside the
    boolean ``region`` ``(W, W)``: inside, the new face; at the border, the original's colours.

    ``skin_lab``: the original's skin colour (Lab ``(3,)``, e.g. the median of its ``skin``), and
    ``generated_skin_lab`` the generated face's (default: the same, as after ``match_colour``). The
    field is drawn from the border where both faces are skin: a border pixel where either is farther
    than ``OFF_SKIN`` (CIE76) from its skin colour (the original's hair, hat or background; the
    generated face's own hair or background, inside a wide outline) weighs ``OFF_SKIN_WEIGHT``. So
    white hair at one cheek does not wash that side of the new face out, and a dark background at the
    generated face's edge does not darken it: there the new face meets the frame with an edge, as a
    face meets hair. When no border pixel is skin on both, the whole border counts."""
    inside = region.astype(np.uint8)
    ring = (cv2.dilate(inside, np.ones((3, 3), np.uint8)) - inside).astype(np.float32)
    on_ring = ring > 0
    if skin_lab is not None and on_ring.any():
        near = np.ones(int(on_ring.sum()), bool)
        for image, colour in ((original, skin_lab), (generated, skin_lab if generated_skin_lab is None
                                                     else generated_skin_lab)):
            near &= ~_far(lab(image[on_ring]), colour)
        if near.any():
            ring[on_ring] = np.where(near, 1.0, OFF_SKIN_WEIGHT)
    new = generated.astype(np.float32)
    field = _push_pull(original.astype(np.float32) - new, ring)
    return np.clip(np.rint(new + field), 0, 255).astype(np.uint8)


def fill_off_skin(face: np.ndarray, region: np.ndarray, skin_lab: np.ndarray) -> np.ndarray:
    """``face`` ``(W, W, 3) uint8 BGR`` with what is not skin at the edge of the boolean ``region``
    replaced by its skin, carried on smoothly (push-pull from the skin around it). "Not skin": farther
    than ``OFF_SKIN`` (CIE76) from ``skin_lab``; "at the edge": connected to the region's border. That is
    the generated face's own background or hair inside a wide outline (a pale band down one cheek); its
    eyes, brows and mouth lie inside the face and stay."""
    inside = region.astype(np.uint8)
    border = (inside - cv2.erode(inside, np.ones((3, 3), np.uint8))) > 0
    if not _far(lab(face[border]), skin_lab).any():   # the usual case: skin all round, nothing to fill
        return face
    off = np.zeros(region.shape, np.uint8)
    off[region] = _far(lab(face[region]), skin_lab)
    _, labels = cv2.connectedComponents(off, connectivity=8)
    edge_labels = np.unique(labels[border & (off > 0)])
    edge = np.isin(labels, edge_labels[edge_labels > 0])
    weights = (region & ~edge).astype(np.float32)
    if weights.sum() < 16:
        return face
    filled = _push_pull(face.astype(np.float32), weights)
    out = face.copy()
    out[edge] = np.clip(np.rint(filled[edge]), 0, 255).astype(np.uint8)
    return out


def poisson(generated: np.ndarray, original: np.ndarray, region: np.ndarray) -> np.ndarray:
    """OpenCV's ``seamlessClone`` (normal clone) of ``generated`` into ``original`` over ``region``."""
    mask = region.astype(np.uint8) * 255
    mask[[0, -1], :] = 0
    mask[:, [0, -1]] = 0
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return generated
    # seamlessClone centres the mask's bounding box on ``centre`` in the destination.
    centre = ((int(xs.min()) + int(xs.max()) + 1) // 2, (int(ys.min()) + int(ys.max()) + 1) // 2)
    return cv2.seamlessClone(generated, original, mask, centre, cv2.NORMAL_CLONE)
