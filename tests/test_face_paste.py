"""Paste-back: the generated face goes back through the inverse warp, over the face's outline, coloured and cloned."""

import cv2
import numpy as np
import pytest
from facekit import needs_dlib, needs_yunet, photo

from anonymixer.face import blend, paste
from anonymixer.face.align import align_face, ffhq_affine, ffhq_quad, template_affine, template_eye_centres
from anonymixer.face.blend import match_colour
from anonymixer.face.paste import PasteStyle, face_mask, fill_face, paste_face, paste_generated
from anonymixer.face.region import outline_from_landmarks, region_polygon
from anonymixer.models.configs import FACES64_TEMPLATE

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


# --- issue 23: the replaced region is the face's outline, coloured and cloned in without a seam ----------

FACES64 = np.asarray(FACES64_TEMPLATE)
GEOMETRY_ONLY = PasteStyle(colour=False, blend="feather", guard=False, dlib=False)


def paste_solid(style=GEOMETRY_ONLY, colour=(0, 255, 0)):
    """A solid-colour generated face pasted on the astronaut: returns (pasted, original, region, polygon)."""
    frame = photo("astronaut")
    original = frame.copy()
    outline = outline_from_landmarks(ASTRONAUT)
    matrix = template_affine(ASTRONAUT, FACES64, 64)
    region = paste_generated(frame, original, np.full((64, 64, 3), colour, np.uint8), matrix, ASTRONAUT, outline,
                             FACES64_TEMPLATE, style)
    return frame, original, region, region_polygon(outline)


def test_the_replaced_region_reaches_past_the_jaw_and_chin_of_the_outline():
    """Every point of the face's outline (jaw 0-16, brows 17-26) is (nearly) replaced: the original's jaw line,
    chin and brows do not survive around the new face."""
    frame, original, region, _ = paste_solid()
    alpha = region.alpha
    for x, y in outline_from_landmarks(ASTRONAUT):
        assert alpha[round(y) - region.y0, round(x) - region.x0] >= 0.8, (x, y)  # measured 0.83-1


def test_nothing_outside_the_region_polygon_changes_so_hair_and_background_stay():
    """Points 5 px outside each corner of the region's polygon keep their bits; a mask shifted by
    more than its 0.1-interocular margin moves some of them into the paste or some outline point out."""
    frame, original, region, polygon = paste_solid()
    centre = polygon.mean(0)
    outward = (polygon - centre) / np.linalg.norm(polygon - centre, axis=1, keepdims=True)
    for x, y in polygon + 5.0 * outward:  # the paste crop's pixel is 2 frame px here: bilinear reach
        assert np.array_equal(frame[round(y), round(x)], original[round(y), round(x)]), (x, y)
    changed = (frame != original).any(2)
    assert np.array_equal(changed, changed & region.full_mask(frame.shape))


def test_the_region_is_the_face_not_the_old_oval_over_the_hair():
    """The top of the region stops below the hairline: the hair 0.9 interocular above the eyes keeps
    its pixels (the fixed oval of before painted over it)."""
    frame, original, _, _ = paste_solid()
    eyes = ASTRONAUT[:2].mean(0)
    hair = np.rint(eyes - [0, 0.9 * np.linalg.norm(ASTRONAUT[1] - ASTRONAUT[0])]).astype(int)
    assert np.array_equal(frame[hair[1], hair[0]], original[hair[1], hair[0]])
    legacy = photo("astronaut")
    paste_face(legacy, np.full((64, 64, 3), (0, 255, 0), np.uint8), template_affine(ASTRONAUT, FACES64, 64),
               FACES64_TEMPLATE)
    assert not np.array_equal(legacy[hair[1], hair[0]], original[hair[1], hair[0]])


def border_band(region):
    """Frame pixels of the alpha's feathered edge (0 < alpha < 1), where the seam would show."""
    mask = np.zeros(photo("astronaut").shape[:2], bool)
    mask[region.y0:region.y1, region.x0:region.x1] = (region.alpha > 0) & (region.alpha < 1)
    return mask


@pytest.mark.parametrize(("blend", "bound"), [("membrane", 12.0), ("poisson", 12.0)])
def test_the_clone_meets_the_original_at_the_region_border(blend, bound, monkeypatch):
    """The original face itself, 50 levels darker, pasted back unstretched (so that only the colour
    differs): in the alpha's feathered edge the result is within a few levels of the original
    (measured: membrane 7.7, Poisson 4.1; feather only: 30.5), because the clone carries the original's colours in from
    the border."""
    monkeypatch.setattr(paste, "cover_scale", lambda *args: (1.0, 1.0))
    frame = photo("astronaut")
    original = frame.copy()
    matrix = template_affine(ASTRONAUT, FACES64, 64)
    crop, _ = align_face(frame, ASTRONAUT, 64, FACES64)
    darker = cv2.subtract(crop, np.full_like(crop, 50))
    region = paste_generated(frame, original, darker, matrix, ASTRONAUT, outline_from_landmarks(ASTRONAUT),
                             FACES64_TEMPLATE, PasteStyle(colour=False, blend=blend, guard=False, dlib=False,
                                                           edge_fill=False))
    band = border_band(region)
    error = np.abs(frame.astype(np.int16) - original.astype(np.int16))[band].mean()
    assert error < bound, error


def test_without_the_clone_the_border_shows_the_step(monkeypatch):
    """The check above can fail: with the blend turned off (feather only) the step stays (measured 30.5)."""
    monkeypatch.setattr(paste, "cover_scale", lambda *args: (1.0, 1.0))
    frame = photo("astronaut")
    original = frame.copy()
    matrix = template_affine(ASTRONAUT, FACES64, 64)
    crop, _ = align_face(frame, ASTRONAUT, 64, FACES64)
    region = paste_generated(frame, original, cv2.subtract(crop, np.full_like(crop, 50)), matrix, ASTRONAUT,
                             outline_from_landmarks(ASTRONAUT), FACES64_TEMPLATE,
                             PasteStyle(colour=False, blend="feather", guard=False, dlib=False))
    error = np.abs(frame.astype(np.int16) - original.astype(np.int16))[border_band(region)].mean()
    assert error > 20.0, error


def test_the_membrane_is_drawn_from_the_border_where_the_original_is_skin():
    """White hair over the region's left border: the clone carries less of it into the new face's cheek
    (border pixels off the skin weigh ``OFF_SKIN_WEIGHT``), while the skin border still brings the face
    to the original's tone."""
    skin, new_skin = (120, 140, 180), (110, 130, 170)
    original = np.full((64, 64, 3), skin, np.uint8)
    original[:, :16] = 245                                  # white hair, crossing the border at x = 12..15
    generated = np.full((64, 64, 3), new_skin, np.uint8)
    region = np.zeros((64, 64), bool)
    region[12:52, 12:52] = True
    reference = np.median(blend.skin(blend.lab(original[region & (np.arange(64) >= 24)[None, :]])), axis=0)
    drawn_from_skin = blend.membrane(generated, original, region, reference).astype(int)
    whole_border = blend.membrane(generated, original, region).astype(int)
    cheek = (32, 22)                                        # inside, a little right of the hair
    washed_out = (whole_border[cheek] - skin).max()         # measured 72 levels towards the white hair
    assert washed_out > 40 and (drawn_from_skin[cheek] - skin).max() < 0.7 * washed_out   # measured 43
    assert np.abs(drawn_from_skin[32, 40] - skin).max() <= 5   # the skin border: the original's tone


def test_the_generated_faces_own_dark_background_at_the_border_does_not_darken_the_new_face():
    """The generated face's own background inside the region's border (a narrow face in a wide outline)
    is no skin: those border pixels weigh ``OFF_SKIN_WEIGHT`` in the membrane (``skin_lab`` given), so
    the middle of the new face keeps its colour, where the whole border (and the membrane before, which
    looked at the original's side only) brightens it by 33-50 levels towards the original past that edge."""
    skin = (120, 140, 180)
    original = np.full((64, 64, 3), skin, np.uint8)
    generated = original.copy()
    generated[:, 44:] = (20, 25, 30)                        # its dark background, crossing the right border
    region = np.zeros((64, 64), bool)
    region[12:52, 12:52] = True
    reference = np.median(blend.skin(blend.lab(original[region])), axis=0)
    drawn_from_skin = np.abs(blend.membrane(generated, original, region, reference).astype(int) - skin)
    whole_border = np.abs(blend.membrane(generated, original, region).astype(int) - skin)
    middle, left = (32, 32), (32, 24)                       # skin on both faces, 12 and 20 px from the edge
    assert whole_border[middle].max() > 30
    assert drawn_from_skin[middle].max() < 0.4 * whole_border[middle].max()   # measured 16 against 50
    assert drawn_from_skin[left].max() <= 6                                    # measured 4 (whole border: 22)


def test_colour_matching_brings_the_inner_face_to_the_originals_mean_colour():
    frame = photo("astronaut")
    crop, _ = align_face(frame, ASTRONAUT, 64, FACES64)
    tinted = np.clip(crop.astype(np.int16) * [1.4, 0.8, 0.6], 0, 255).astype(np.uint8)  # a blue cast (BGR)
    inner = np.zeros((64, 64), bool)
    inner[30:52, 18:46] = True
    matched = match_colour(tinted, inner, blend.skin(blend.lab(crop[inner])))

    def lab_mean(image):
        return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)[inner].mean(0)

    assert np.linalg.norm(lab_mean(tinted) - lab_mean(crop)) > 15
    assert np.linalg.norm(lab_mean(matched) - lab_mean(crop)) < 2.0


def test_a_gray_photo_gives_a_gray_face():
    gray = cv2.cvtColor(cv2.cvtColor(photo("astronaut"), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    crop, _ = align_face(gray, ASTRONAUT, 64, FACES64)
    colourful = np.full((64, 64, 3), (40, 120, 220), np.uint8)
    colourful[::2] = (60, 140, 200)
    inner = np.ones((64, 64), bool)
    matched = match_colour(colourful, inner, blend.skin(blend.lab(crop[inner]))).astype(np.int16)
    assert np.abs(matched[..., 0] - matched[..., 2]).max() <= 3


def test_dark_glasses_on_the_original_do_not_darken_the_new_face():
    """Colour is matched skin to skin (``blend.skin``): the frames and lenses of the original's glasses
    (a third of its inner face here) are left out of its statistics, so the new face takes the tone of
    the skin around them. Matched on the inner face's mean (before), it came out 18 L* darker."""


    original = np.full((64, 64, 3), (150, 170, 210), np.uint8)
    original[20:34] = (30, 40, 60)                          # the glasses, a band across the inner face
    generated = np.full((64, 64, 3), (90, 110, 150), np.uint8)
    generated[::2, ::2] = (100, 120, 160)                   # some spread to match
    inner = np.zeros((64, 64), bool)
    inner[12:54, 12:52] = True
    matched = match_colour(generated, inner, blend.skin(blend.lab(original[inner])))
    skin_l = blend.lab(original[40:50, 20:40])[..., 0].mean()
    assert abs(blend.lab(matched[inner])[..., 0].mean() - skin_l) < 2.0


def test_the_generated_faces_own_background_at_the_regions_edge_becomes_its_skin():
    """A pale band down one side of the region (the generated face's background inside a wide outline)
    is not skin and touches the border: it is filled with the skin around it. Two dark eyes lie inside
    the face, touch no border, and stay as drawn."""
    skin = np.array([120, 140, 180])
    face = np.full((64, 64, 3), skin, np.uint8)
    face[:, :20] = (235, 235, 240)                          # the band, crossing the region's left border
    face[28:32, 26:30] = face[28:32, 40:44] = (30, 30, 40)  # the eyes
    region = np.zeros((64, 64), bool)
    region[8:56, 12:52] = True
    skin_lab = np.median(blend.skin(blend.lab(face[region])), axis=0)
    filled = blend.fill_off_skin(face, region, skin_lab).astype(int)
    assert np.abs(filled[16:48, 12:20] - skin).max() <= 3   # the band inside the region: skin now
    assert (filled[:, :12] == face[:, :12]).all()           # outside the region: untouched
    assert (filled[28:32, 26:30] == 30).all() or (filled[28:32, 26:30] == face[28:32, 26:30]).all()
    assert (filled[28:32, 40:44] == face[28:32, 40:44]).all()


def test_without_the_edge_fill_the_generated_background_shows_in_the_paste():
    """The same through ``paste_generated``: a dark band down the generated face's left side (its own
    background) stays in the frame with ``PasteStyle(edge_fill=False)`` and becomes skin by default."""
    frame = photo("astronaut")
    crop, _ = align_face(frame, ASTRONAUT, 64, FACES64)
    banded = crop.copy()
    banded[:, :22] = (45, 40, 40)
    lightness = {}
    for fill in (True, False):
        out = frame.copy()
        paste_generated(out, frame, banded, template_affine(ASTRONAUT, FACES64, 64), ASTRONAUT,
                        outline_from_landmarks(ASTRONAUT), FACES64_TEMPLATE,
                        PasteStyle(guard=False, dlib=False, edge_fill=fill))
        changed = np.abs(out.astype(int) - frame.astype(int)).sum(2) > 0
        lab_out = cv2.cvtColor(out, cv2.COLOR_BGR2Lab)[..., 0].astype(float)
        xs = np.nonzero(changed.any(0))[0]
        left = changed & (np.arange(frame.shape[1]) < xs.min() + 0.15 * (xs.max() - xs.min()))[None, :]
        lightness[fill] = lab_out[left].mean()
    assert lightness[True] - lightness[False] > 15, lightness


def test_a_tracks_outline_comes_from_dlib_every_other_frame_and_is_carried_by_the_landmarks_between(monkeypatch):
    """``TrackOutlines(every=2)``: frame 0 of a track runs the predictor, frame 1 carries frame 0's outline
    by the five landmarks (moved 5 px right with them), frame 2 runs it again; a photo (no track) runs
    it every time."""
    from anonymixer.face import region
    from anonymixer.face.detect import Face

    calls = []

    def measured(image, face, use_dlib=True):
        calls.append(face.track)
        return outline_from_landmarks(face.landmarks) + (0.0, 3.0)   # a "measured" outline: 3 px lower

    monkeypatch.setattr(region, "face_outline", measured)
    monkeypatch.setattr(region, "_dlib_predictor", lambda: ("dlib", "predictor"))
    frame = photo("astronaut")
    tracks = region.TrackOutlines(every=2)
    face = Face(np.zeros(4, np.float32), ASTRONAUT.astype(np.float32), 1.0, track=7)
    first = tracks.outline(frame, face)
    moved = tracks.outline(frame, face.moved(5.0, 0.0))
    assert calls == [7]                                             # carried, not measured again
    np.testing.assert_allclose(moved, first + (5.0, 0.0), atol=1e-6)
    tracks.outline(frame, face)
    assert calls == [7, 7]                                          # every other frame: measured
    tracks.outline(frame, Face(face.box, face.landmarks, 1.0, track=None))
    tracks.outline(frame, Face(face.box, face.landmarks, 1.0, track=None))
    assert calls == [7, 7, None, None]                              # a photo: every time


def test_an_empty_region_leaves_the_face_as_it_is():
    """No pixels in the region (a face whose region lies outside its paste crop): nothing to fill or
    correct, and no error from OpenCV, which refuses an empty image (the face would be masked)."""
    face = np.full((32, 32, 3), 120, np.uint8)
    empty, skin = np.zeros((32, 32), bool), np.array([50.0, 10.0, 10.0])
    assert np.array_equal(blend.fill_off_skin(face, empty, skin), face)
    assert blend.lab(face[empty]).shape == (0, 3)


@needs_dlib
@needs_yunet
@pytest.mark.parametrize("turn", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_a_sideways_faces_68_point_outline_is_measured_upright(turn):
    """dlib's predictors are trained on upright faces: on a sideways photo the outline strayed 1.85
    interocular distances from the 5-point fit (so the fit was used) and dlib's recogniser cut a chip of
    the wrong face; turned upright for them (``align.dlib_upright``) both find the face again
    (measured 0.23 from the fit, upright 0.19; recogniser 0.07 from the upright photo's template)."""
    from anonymixer.eval.fr import DlibRecognizer
    from anonymixer.face.detect import open_detector
    from anonymixer.face.region import outline_from_dlib
    from anonymixer.face.search import find_faces

    detector, recogniser = open_detector("yunet"), DlibRecognizer()
    upright_photo = photo("grace_hopper")
    upright = find_faces(detector, upright_photo).faces[0]
    sideways_photo = cv2.rotate(upright_photo, turn)
    sideways = find_faces(detector, sideways_photo).faces[0]
    interocular = float(np.linalg.norm(sideways.landmarks[1] - sideways.landmarks[0]))
    found = outline_from_dlib(sideways_photo, sideways)
    assert found is not None
    assert np.linalg.norm(found - outline_from_landmarks(sideways.landmarks), axis=1).max() < 0.5 * interocular
    templates = recogniser.embed(np.stack([recogniser.align(upright_photo, upright.landmarks),
                                           recogniser.align(sideways_photo, sideways.landmarks)]))
    assert np.linalg.norm(templates[0] - templates[1]) < 0.2
