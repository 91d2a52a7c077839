"""Paste-back: the generated face goes back through the inverse warp, blended by a feathered mask."""

import numpy as np
import pytest
from facekit import photo

from anonymixer.face.align import align_face, ffhq_affine, ffhq_quad, template_eye_centres
from anonymixer.face.paste import face_mask, fill_face, paste_face

# Hand-placed landmarks of the astronaut's face (close to YuNet's), so these tests need no detector.
ASTRONAUT = np.array([[200.1, 101.8], [247.2, 102.6], [220.3, 124.7], [198.9, 143.2], [239.8, 143.9]],
                     np.float32)


def generated_face(size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_paste_back_leaves_every_pixel_outside_the_face_mask_bit_identical():
    frame = photo("astronaut")
    original = frame.copy()
    region = paste_face(frame, generated_face(), ffhq_affine(ASTRONAUT, 64))
    outside = ~region.full_mask(frame.shape)
    assert outside.sum() > 0.9 * outside.size
    assert np.array_equal(frame[outside], original[outside])
    assert not np.array_equal(frame, original)


def test_paste_back_replaces_the_core_of_the_face_completely():
    frame = photo("astronaut")
    face = np.full((64, 64, 3), (10, 200, 30), np.uint8)
    paste_face(frame, face, ffhq_affine(ASTRONAUT, 64))
    for x, y in ASTRONAUT:  # eyes, nose and mouth lie well inside the mask
        assert np.array_equal(frame[round(y), round(x)], face[0, 0])


def test_the_mask_is_one_on_the_face_and_exactly_zero_at_the_crop_border():
    mask = face_mask(256)
    for x, y in template_eye_centres(256):
        assert mask[round(y), round(x)] == 1.0
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert np.all(border == 0.0)


def test_a_face_at_the_frame_edge_is_pasted_into_the_visible_part_only():
    frame = photo("astronaut")[:120, :230].copy()  # the face's lower half is cut off
    region = paste_face(frame, generated_face(), ffhq_affine(ASTRONAUT, 64))
    assert region.y1 <= 120 and region.x1 <= 230 and region.alpha.shape == (region.y1 - region.y0,
                                                                             region.x1 - region.x0)


def test_fail_closed_fill_covers_the_crop_square_and_the_detector_box():
    frame = photo("astronaut")
    box = np.array([178.0, 62.6, 90.4, 113.9], np.float32)
    fill_face(frame, ASTRONAUT, box, (0, 0, 0))
    x, y, w, h = box.astype(int)
    assert not frame[y:y + h, x:x + w].any()
    centre = ffhq_quad(ASTRONAUT).mean(0).round().astype(int)
    assert not frame[centre[1], centre[0]].any()


# --- the paste lands to the pixel, with a feathered seam ------------------------------------------------

def mean_error_under_the_mask(pasted, original, region):
    """Mean absolute difference, in 8-bit levels, over the pixels the paste may have changed."""
    under = region.full_mask(original.shape)
    assert under.sum() > 10_000  # the whole face, not a sliver
    return np.abs(pasted.astype(np.int16) - original.astype(np.int16))[under].mean()


# Measured on the astronaut (quad side 188 px): 1.59 levels at 256, 0.39 at 1024 (two bilinear
# resamplings). The same paste 0.5 px off gives 3.2 / 3.0, 3 px off 12.1 / 12.5.
@pytest.mark.parametrize(("size", "bound"), [(256, 2.5), (1024, 1.0)])
def test_an_unmodified_aligned_crop_pasted_back_lands_on_the_original_face(size, bound):
    frame = photo("astronaut")
    original = frame.copy()
    crop, matrix = align_face(frame, ASTRONAUT, size)
    region = paste_face(frame, crop, matrix)
    error = mean_error_under_the_mask(frame, original, region)
    assert error < bound, error


def test_a_paste_half_a_pixel_off_is_measurably_worse_than_the_bound():
    """The bound above can fail: shift the same paste by half a frame pixel and it does."""
    frame = photo("astronaut")
    original = frame.copy()
    crop, matrix = align_face(frame, ASTRONAUT, 256)
    shifted = matrix.copy()
    shifted[:, 2] -= matrix[:, :2] @ [0.5, 0.0]  # frame point (x, y) now maps where (x + 0.5, y) did
    region = paste_face(frame, crop, shifted)
    assert mean_error_under_the_mask(frame, original, region) > 2.5


def test_the_seam_is_feathered_over_a_band_not_a_hard_edge():
    """A white face pasted on black shows the blend weights actually used: along the face's
    horizontal axis they fall from 1 to 0 over at least 0.12 of the crop's side on each side
    (measured 0.164, 31 frame px), and never by more than 10 % between neighbours (measured 7 %)."""
    frame = np.zeros((512, 512, 3), np.uint8)
    quad = ffhq_quad(ASTRONAUT)
    side = np.hypot(*(quad[1] - quad[0]))  # 188 frame px
    paste_face(frame, np.full((256, 256, 3), 255, np.uint8), ffhq_affine(ASTRONAUT, 256))
    weights = frame[:, :, 1].astype(np.int16)
    cx, cy = quad.mean(0).round().astype(int)
    row = weights[cy]
    assert row[cx] == 255 and row[0] == 0 and row[-1] == 0
    band = (row > 0) & (row < 255)
    assert band[:cx].sum() >= 0.12 * side and band[cx:].sum() >= 0.12 * side, band.sum()
    assert np.abs(np.diff(weights, axis=0)).max() <= 26 and np.abs(np.diff(weights, axis=1)).max() <= 26


def test_the_mask_itself_rises_from_0_to_1_over_a_band_of_at_least_0_12_of_the_side():
    mask = face_mask(256)
    row = mask[133]  # through the mask's centre (0.52 * 256)
    band = (row > 0) & (row < 1)
    assert band[:128].sum() >= 0.12 * 256 and band[128:].sum() >= 0.12 * 256  # measured 42 px each
    assert np.all(np.diff(row[:128]) >= 0) and np.all(np.diff(row[128:]) <= 0)
