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
OFF_SKIN_WEIGHT = 0.2    # ... weighs this much in the field
AB_SPREAD = (0.0, 1.0)   # bounds of the chroma spread ratios (0: a gray photo gives a gray face; never
                         # more saturated than the generated face, which blotches)


def lab(image_bgr: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8 BGR`` -> ``float32`` CIE Lab."""
    return cv2.cvtColor(image_bgr.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_BGR2Lab)


def match_colour(generated: np.ndarray, original: np.ndarray, generated_inner: np.ndarray,
                 original_inner: np.ndarray, original_lab: np.ndarray | None = None) -> np.ndarray:
    """``generated`` ``(W, W, 3) uint8 BGR`` with the Lab mean and spread of ``original`` (same shape),
    measured inside the boolean masks ``generated_inner`` / ``original_inner`` ``(W, W)``.
    ``original_lab``: ``original`` in Lab (``lab``), when the caller has it already."""
    lab_g, lab_o = lab(generated), (lab(original) if original_lab is None else original_lab)
    g, o = lab_g[generated_inner], lab_o[original_inner]
    if len(g) < 16 or len(o) < 16:
        return generated
    mean_g, mean_o = g.mean(0), o.mean(0)
    ratio = o.std(0) / np.maximum(g.std(0), 1e-3)
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
             skin: np.ndarray | None = None, original_lab: np.ndarray | None = None) -> np.ndarray:
    """``generated`` plus the smooth field that equals ``original - generated`` just outside the
    boolean ``region`` ``(W, W)``: inside, the new face; at the border, the original's colours.

    ``skin``: the original's skin colour (Lab, ``skin_colour``). Border pixels of the original farther
    than ``OFF_SKIN`` (CIE76) from it (hair, a hat, background where the region meets them) weigh
    ``OFF_SKIN_WEIGHT`` only: the field is drawn from where the border is skin, so that white hair at
    one cheek does not wash that side of the new face out (the new face meets the hair with an edge,
    as a face does). ``original_lab``: ``original`` in Lab, when the caller has it already."""
    inside = region.astype(np.uint8)
    ring = (cv2.dilate(inside, np.ones((3, 3), np.uint8)) - inside).astype(np.float32)
    if skin is not None and ring.any():
        distance = np.linalg.norm((lab(original) if original_lab is None else original_lab) - skin, axis=2)
        weighted = ring * np.where(distance > OFF_SKIN, OFF_SKIN_WEIGHT, 1.0).astype(np.float32)
        if weighted.max() >= 1.0:   # some of the border is skin: else all of it counts
            ring = weighted
    difference = original.astype(np.float32) - generated.astype(np.float32)
    field = _push_pull(difference, ring)
    return np.clip(np.rint(generated.astype(np.float32) + field), 0, 255).astype(np.uint8)


def skin_colour(image_lab: np.ndarray, inner: np.ndarray) -> np.ndarray | None:
    """``(3,)`` Lab: the median colour of ``image_lab`` ``(W, W, 3)`` (Lab, ``lab``) inside ``inner``
    ``(W, W) bool`` (the inner face: mostly skin), or None when it holds too few pixels."""
    if int(inner.sum()) < 16:
        return None
    return np.asarray(np.median(image_lab[inner], axis=0), np.float32)


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
