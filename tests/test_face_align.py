"""FFHQ alignment: eye centres land on the template; the warp, its resizing and its inverse agree.

The template, derived from the FFHQ recipe (see anonymixer/face/align.py): for a frontal face with
equal interocular and eye-to-mouth distances, the eye centres land at (0.375 S, 0.475 S) and
(0.625 S, 0.475 S) minus half a pixel, i.e. (95.5, 121.1) and (159.5, 121.1) at S = 256.
"""

import cv2
import numpy as np
import pytest
from facekit import PHOTOS, needs_yunet, photo

from anonymixer.face.align import (align_face, apply_affine, ffhq_affine, ffhq_quad, invert_affine, resize_affine,
                                   template_eye_centres)
from anonymixer.face.detect import YuNetDetector


def frontal_landmarks(centre=(300.0, 200.0), eye_distance=60.0, angle_deg=0.0):
    """Landmarks of an ideal frontal face (eye-to-mouth distance = interocular distance), rotated."""
    d = eye_distance
    local = np.array([[-d / 2, 0], [d / 2, 0], [0, d / 2], [-0.4 * d, d], [0.4 * d, d]])
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (local @ rotation.T + centre).astype(np.float32)


def test_template_eye_centres_at_256_are_the_ffhq_positions():
    assert np.allclose(template_eye_centres(256), [[95.5, 121.1], [159.5, 121.1]])


def test_ideal_face_maps_exactly_onto_the_template_at_any_rotation_and_size():
    for angle in (-30.0, 0.0, 25.0):
        for size in (64, 256, 1024):
            matrix = ffhq_affine(frontal_landmarks(angle_deg=angle), size)
            eyes = apply_affine(matrix, frontal_landmarks(angle_deg=angle)[:2])
            assert np.allclose(eyes, template_eye_centres(size), atol=1e-6)


@needs_yunet
@pytest.mark.parametrize("name", PHOTOS)
def test_aligned_crop_puts_eye_centres_within_3_px_of_the_template_at_256(name):
    image = photo(name)
    face = YuNetDetector().detect(image)[0]
    crop, matrix = align_face(image, face.landmarks, 256)
    assert crop.shape == (256, 256, 3)
    error = np.abs(apply_affine(matrix, face.landmarks[:2]) - template_eye_centres(256)).max()
    assert error < 3.0, error


def test_the_crop_shows_the_eyes_where_the_affine_says():
    """Pixels, not only arithmetic: dots drawn at a rotated face's eyes appear at the template."""
    landmarks = frontal_landmarks(centre=(320.0, 240.0), eye_distance=80.0, angle_deg=20.0)
    image = np.zeros((480, 640, 3), np.uint8)
    for x, y in landmarks[:2]:
        cv2.circle(image, (round(x * 16), round(y * 16)), 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    crop, _ = align_face(image, landmarks, 256)
    gray = crop[:, :, 0].astype(np.float64)
    found = []
    for lo, hi in ((0, 128), (128, 256)):
        half = gray[:, lo:hi]
        ys, xs = np.mgrid[0:256, lo:hi]
        found.append([(xs * half).sum() / half.sum(), (ys * half).sum() / half.sum()])
    assert np.abs(np.array(found) - template_eye_centres(256)).max() < 0.5


def test_resized_alignment_equals_alignment_computed_at_the_new_size():
    landmarks = frontal_landmarks(angle_deg=12.0)
    assert np.allclose(resize_affine(ffhq_affine(landmarks, 256), 256, 64), ffhq_affine(landmarks, 64))


def test_inverse_warp_maps_crop_points_back_to_frame_points():
    landmarks = frontal_landmarks(angle_deg=-8.0)
    matrix = ffhq_affine(landmarks, 256)
    assert np.allclose(apply_affine(invert_affine(matrix), apply_affine(matrix, landmarks)), landmarks, atol=1e-4)


def test_a_face_far_larger_than_the_crop_is_shrunk_without_moire():
    """Stripes far finer than a crop pixel must average to gray, not alias into coarse stripes."""
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, ::2] = 255  # 2-pixel period; the crop samples every ~7.5 frame pixels
    landmarks = frontal_landmarks(centre=(320.0, 200.0), eye_distance=120.0, angle_deg=10.0)
    crop, matrix = align_face(stripes, landmarks, 64)
    naive = cv2.warpAffine(stripes, matrix, (64, 64), flags=cv2.INTER_LINEAR)
    assert naive.std() > 40  # what a plain warp does
    assert crop.std() < 8 and abs(crop.mean() - 127.5) < 8


# --- golden quads: faces whose eye-to-mouth distance sets the crop's size --------------------------

def test_golden_quad_of_an_upright_face_with_a_long_eye_to_mouth_distance():
    """Eyes 40 px apart, mouth 60 px below them: 1.8 * 60 = 108 > 2 * 40, so the half-side is 108.
    By hand: x = (40, 0) - rot90((0, 60)) = (100, 0) -> scaled to (108, 0); y = (0, 108);
    c = (120, 100) + 0.1 * (0, 60) = (120, 106). (A factor of 2.0 would give a half-side of 120.)"""
    landmarks = np.array([[100.0, 100.0], [140.0, 100.0], [120.0, 130.0], [105.0, 160.0], [135.0, 160.0]])
    assert np.allclose(ffhq_quad(landmarks), [[12.0, -2.0], [12.0, 214.0], [228.0, 214.0], [228.0, -2.0]],
                       rtol=0, atol=1e-9)


def test_golden_quad_of_a_tilted_face_with_a_long_eye_to_mouth_distance():
    """Interocular 52.3 px, eye-to-mouth 80.0 px (ratio 1.53), tilted; frozen from the FFHQ recipe."""
    landmarks = np.array([[210.5, 180.25], [262.0, 171.0], [241.0, 215.5], [226.0, 258.75], [268.5, 251.0]])
    golden = [[72.98715994, 63.27123293], [117.07123293, 347.91284006],
              [401.71284006, 303.82876707], [357.62876707, 19.18715994]]
    assert np.allclose(ffhq_quad(landmarks), golden, rtol=0, atol=1e-6)
