"""Paste-back: the generated face goes back through the inverse warp, blended by a feathered mask."""

import numpy as np
from facekit import photo

from anonymixer.face.align import ffhq_affine, ffhq_quad, template_eye_centres
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
