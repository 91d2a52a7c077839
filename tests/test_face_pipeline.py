"""The frame pipeline: all faces of a frame in one batch, fail closed, no-face policy, smoothing."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from facekit import needs_yunet, photo, two_photo_frame

from anonymixer.face.detect import Face, YuNetDetector
from anonymixer.face.align import align_face
from anonymixer.face.paste import PasteStyle, fill_face, paste_face
from anonymixer.face.pipeline import STAGES, FaceProtector
from anonymixer.face.preview import Preview, draw_overlay
from anonymixer.face.track import LandmarkSmoother
from anonymixer.runtime import Protector

pytestmark = needs_yunet


@pytest.fixture(scope="module")
def detector():
    return YuNetDetector()


@pytest.fixture
def protector(tiny_bundle, key):
    return Protector(tiny_bundle, key)


def spy_on_protect(protector):
    """Record the shape of every batch the Protector is given."""
    calls = []
    original = protector.protect

    def protect(faces):
        calls.append(faces.shape)
        return original(faces)

    protector.protect = protect
    return calls


def boom(*args, **kwargs):
    raise RuntimeError("forced failure")


def fill_region(frame, faces):
    """``(H, W) bool``: where the fail-closed fill covers ``faces``."""
    canvas = np.zeros(frame.shape, np.uint8)
    for face in faces:
        fill_face(canvas, face.landmarks, face.box, (255, 255, 255))
    return canvas[:, :, 0] > 0


def test_two_faces_in_one_frame_are_protected_in_one_batch(detector, protector):
    calls = spy_on_protect(protector)
    frame = two_photo_frame()
    result = FaceProtector(protector, detector).process(frame)
    assert calls == [(2, 256, 256, 3)]
    assert result.protected == 2 and result.masked == 0 and not result.failures
    for face in result.faces:
        x, y, w, h = face.box.astype(int)
        assert not np.array_equal(result.frame[y:y + h, x:x + w], frame[y:y + h, x:x + w])



class IdentityProtector:
    """Gives back the aligned crops it is given, resized to ``output`` px: paste-back must restore the frame."""

    input_size = 256
    crop_template = None                      # FFHQ alignment, as e4e models have
    info = SimpleNamespace(crop_template=None)

    def __init__(self, output):
        self.output, self.last_timings_ms = output, {}

    def protect(self, faces):
        return np.stack([cv2.resize(face, (self.output, self.output), interpolation=cv2.INTER_LINEAR)
                         for face in faces])


# Mean error under each face's mask, 8-bit levels. Measured at outputs 256 / 1024: astronaut 1.57 / 1.62,
# grace_hopper 2.76 / 2.83 (its face is shrunk to fit 256). Pasted 0.5 px off: 3.2 / 3.9; 3 px off: 12 / 11.
PASTE_BACK_BOUNDS = {"astronaut": 2.5, "grace_hopper": 4.0}


@pytest.mark.parametrize("output", [256, 1024])
def test_the_unmodified_crop_goes_back_where_it_came_from_through_the_whole_pipeline(detector, output):
    frame = two_photo_frame()  # astronaut on the left half, grace_hopper on the right
    # (it gives the person back: the identity check, which would mask it, is off here; so is the edge
    # fill, which would turn the original's own hair at the region's edge into skin: this is geometry)
    result = FaceProtector(IdentityProtector(output), detector, identity_check=False,
                           paste_style=PasteStyle(edge_fill=False)).process(frame)
    assert result.protected == 2 and not result.failures
    for face in result.faces:
        name = "astronaut" if face.landmarks[0, 0] < 512 else "grace_hopper"
        crop, matrix = align_face(frame, face.landmarks, 256)
        under = paste_face(np.zeros_like(frame), crop, matrix).full_mask(frame.shape)
        error = np.abs(result.frame.astype(np.int16) - frame.astype(np.int16))[under].mean()
        assert error < PASTE_BACK_BOUNDS[name], (name, error)


def test_the_input_frame_is_never_modified(detector, protector):
    frame = two_photo_frame()
    before = frame.copy()
    FaceProtector(protector, detector).process(frame)
    assert np.array_equal(frame, before)


def test_a_failing_protector_masks_every_face_of_its_batch_and_reports_it(detector, protector):
    protector.protect = boom
    frame = two_photo_frame()
    result = FaceProtector(protector, detector).process(frame)
    region = fill_region(frame, result.faces)
    assert result.masked == 2 and result.protected == 0
    assert len(result.failures) == 2 and all("forced failure" in line for line in result.failures)
    assert not result.frame[region].any()  # solid fill: no original face pixel survives
    assert np.array_equal(result.frame[~region], frame[~region])  # the rest of the frame is untouched


def test_a_failing_paste_masks_only_that_face(detector, protector, monkeypatch):
    import anonymixer.face.pipeline as pipeline

    real_paste, calls = pipeline.paste_generated, []

    def paste_second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("forced failure")
        return real_paste(*args, **kwargs)

    monkeypatch.setattr(pipeline, "paste_generated", paste_second_fails)
    frame = two_photo_frame()
    result = FaceProtector(protector, detector).process(frame)
    assert result.protected == 1 and result.masked == 1
    assert len(result.failures) == 1 and "paste-back failed" in result.failures[0]
    masked = [face for face in result.faces if not result.frame[fill_region(frame, [face])].any()]
    assert len(masked) == 1
    x, y, w, h = masked[0].box.astype(int)
    assert not result.frame[y:y + h, x:x + w].any()


def test_a_failing_alignment_masks_only_that_face(detector, protector, monkeypatch):
    import anonymixer.face.pipeline as pipeline

    real_align = pipeline.align_face
    monkeypatch.setattr(pipeline, "align_face", lambda image, lm, size, *template: (
        boom() if lm[0, 0] > 512 else real_align(image, lm, size, *template)))  # the face on the right half
    calls = spy_on_protect(protector)
    result = FaceProtector(protector, detector).process(two_photo_frame())
    assert calls == [(1, 256, 256, 3)]
    assert result.protected == 1 and result.masked == 1 and "alignment failed" in result.failures[0]


def test_a_failing_detector_masks_the_whole_frame(protector):
    class BrokenDetector:
        name = "broken"
        detect = staticmethod(boom)

    result = FaceProtector(protector, BrokenDetector()).process(photo("astronaut"))
    assert result.detect_failed and not result.frame.any()
    assert "detection failed" in result.failures[0]


@pytest.mark.parametrize("policy", ["pass", "mask"])
def test_no_face_policy_decides_what_happens_to_a_frame_without_faces(detector, protector, policy):
    empty = np.full((240, 320, 3), 180, np.uint8)
    result = FaceProtector(protector, detector, no_face=policy).process(empty)
    assert result.no_face and not result.failures
    assert np.array_equal(result.frame, empty) if policy == "pass" else not result.frame.any()


def test_timings_cover_every_stage_from_detection_to_paste(detector, protector):
    result = FaceProtector(protector, detector).process(photo("astronaut"))
    assert list(result.timings_ms)[:len(STAGES)] == list(STAGES)
    assert all(result.timings_ms[stage] > 0 for stage in STAGES)


def test_smoothing_steadies_landmarks_that_jitter_on_a_still_face():
    rng = np.random.default_rng(0)
    truth = np.array([[100, 100], [140, 100], [120, 120], [105, 140], [135, 140]], np.float32)
    smoother, raw_error, smooth_error = LandmarkSmoother(), [], []
    for i in range(60):
        noisy = truth + rng.normal(0, 2.0, truth.shape).astype(np.float32)
        face = Face(np.array([80, 70, 80, 100], np.float32), noisy, 0.9)
        smoothed = smoother.update([face], i / 30)[0].landmarks
        if i >= 10:
            raw_error.append(np.abs(noisy - truth).mean())
            smooth_error.append(np.abs(smoothed - truth).mean())
    assert np.mean(smooth_error) < 0.5 * np.mean(raw_error)


def test_a_face_that_is_lost_starts_a_fresh_track():
    face_a = Face(np.array([80, 70, 80, 100], np.float32), np.zeros((5, 2), np.float32) + 100, 0.9)
    moved = Face(np.array([400, 70, 80, 100], np.float32), np.zeros((5, 2), np.float32) + 420, 0.9)
    smoother = LandmarkSmoother()
    smoother.update([face_a], 0.0)
    smoother.update([], 1 / 30)
    assert np.array_equal(smoother.update([moved], 2 / 30)[0].landmarks, moved.landmarks)


def test_preview_overlay_is_drawn_on_a_copy_and_the_preview_turns_itself_off_without_a_display(
        detector, protector, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = FaceProtector(protector, detector).process(photo("astronaut"))
    overlay = draw_overlay(result.frame, result, fps=12.5)
    assert overlay.shape == result.frame.shape and not np.array_equal(overlay, result.frame)
    preview = Preview(True)
    assert preview.show(result.frame, result, 12.5) and preview.note and "--preview is off" in preview.note
