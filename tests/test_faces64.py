"""faces64: the packaged DCGAN generator + our trained encoder, behind the same four graphs."""

import hashlib
import shutil

import cv2
import numpy as np
import pytest
import torch
from facekit import needs_dlib

from anonymixer.errors import CheckpointError
from anonymixer.face.align import align_face, apply_affine, template_affine
from anonymixer.face.detect import open_detector
from anonymixer.keys import Key
from anonymixer.models.bundle import FACES64_ENCODER_FILE, FACES64_ENCODER_SHA256, faces64_bundle, resolve_spec
from anonymixer.models.configs import FACES64_TEMPLATE, ModelConfig, faces64
from anonymixer.models.dcgan import build_faces64_generator, dcgan_layers, find_dcgan_weights, load_dcgan_state
from anonymixer.runtime import Protector
from anonymixer.runtime.protector import output_to_faces


@pytest.fixture(scope="module")
def bundle():
    return faces64_bundle()


@pytest.fixture(scope="module")
def generator(bundle):
    return bundle.build_generator()


def seeded_faces(generator, n, seed):
    z = torch.randn(n, 1, 100, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return z, generator(z)


def test_folded_generator_draws_what_the_packaged_dcgan_draws():
    config = faces64().generator
    state = load_dcgan_state()
    reference = dcgan_layers(config)
    reference.load_state_dict({k.removeprefix("main."): v for k, v in state.items()})
    z = torch.randn(4, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference.eval()(z.reshape(4, 100, 1, 1))
        got = build_faces64_generator(config, state)(z.reshape(4, 1, 100))
    assert got.shape == (4, 3, 64, 64)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build_faces64_generator(config, state).modules())
    assert torch.allclose(got, want, atol=2e-5, rtol=0)
    assert float(want.std()) > 0.2  # real weights draw images, not a flat field


def test_a_dcgan_file_that_is_not_the_published_one_is_refused(tmp_path):
    copy = tmp_path / "weights.tar"
    shutil.copyfile(find_dcgan_weights(), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="weights.tar"):
        load_dcgan_state(copy)


def test_the_shipped_encoder_weights_match_their_published_sha256():
    assert hashlib.sha256(FACES64_ENCODER_FILE.read_bytes()).hexdigest() == FACES64_ENCODER_SHA256
    assert len(FACES64_ENCODER_SHA256) == 64


def test_a_tampered_encoder_file_is_refused_by_the_faces64_spec(tmp_path, monkeypatch):
    import anonymixer.models.bundle as bundle_module

    copy = tmp_path / "faces64_encoder.pt"
    data = bytearray(FACES64_ENCODER_FILE.read_bytes())
    data[-100] ^= 0x01
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(bundle_module, "FACES64_ENCODER_FILE", copy)
    with pytest.raises(CheckpointError, match="sha256"):
        bundle_module.faces64_bundle()


def test_faces64_speaks_in_one_code_of_100_with_an_identity_mapping(bundle, key):
    protector = Protector(bundle, key)
    info = protector.info
    assert (info.input_size, info.n_latent, info.style_dim, info.output_resolution) == (64, 1, 100, 64)
    assert info.crop_template == FACES64_TEMPLATE and not info.is_random
    z = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    w = protector.backend.stage("mapping").run({"z": z})["w_key"]
    assert w.shape == (3, 1, 100)
    np.testing.assert_array_equal(w[:, 0], z)  # the code is z itself (w_avg = 0, no truncation)


def test_the_config_round_trips_through_json_with_its_family_and_template():
    config = faces64()
    again = ModelConfig.from_dict(config.to_dict())
    assert again == config
    assert again.family == "faces64" and again.crop_template == FACES64_TEMPLATE


def test_the_crop_template_is_where_yunet_finds_landmarks_on_generated_faces(generator):
    _, images = seeded_faces(generator, 24, seed=123)
    detector = open_detector("yunet")
    found = []
    for image in output_to_faces(images.numpy()):
        big = cv2.resize(np.ascontiguousarray(image[..., ::-1]), (256, 256), interpolation=cv2.INTER_CUBIC)
        faces = detector.detect(big)
        if len(faces) == 1:
            found.append(faces[0].landmarks / 256.0)
    assert len(found) >= 20
    median = np.median(np.stack(found), axis=0)
    assert np.abs(median - np.asarray(FACES64_TEMPLATE)).max() < 0.03


def test_template_alignment_puts_the_landmarks_on_the_template():
    template = np.asarray(FACES64_TEMPLATE)
    angle, scale, shift = 0.3, 2.7, np.array([140.0, 75.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (template * 64) @ rotation.T + shift  # the template, rotated, scaled, moved
    matrix = template_affine(landmarks, template, 64)
    np.testing.assert_allclose(apply_affine(matrix, landmarks), template * 64 - 0.5, atol=1e-9)
    frame = np.zeros((400, 400, 3), np.uint8)
    crop, matrix2 = align_face(frame, landmarks, 64, template)
    assert crop.shape == (64, 64, 3)
    np.testing.assert_allclose(matrix2, matrix)


def test_the_encoder_reconstructs_held_out_generated_faces(bundle, generator):
    encoder = bundle.build_encoder()
    z, images = seeded_faces(generator, 64, seed=987_654)
    with torch.no_grad():
        w = encoder(images)
        again = generator(w)
    cosine = torch.nn.functional.cosine_similarity(w.flatten(1), z.flatten(1)).mean()
    mse = ((again - images) ** 2).flatten(1).mean(1)
    psnr = (10 * torch.log10(4.0 / mse)).mean()
    # Untrained weights give cosine ~0 and PSNR ~11 dB; see benchmarks/RESULTS.md for the trained figures.
    assert float(cosine) > 0.3
    assert float(psnr) > 17.0


def test_the_demo_shows_a_generated_face_where_each_real_face_was(tmp_path, bundle, key):
    from anonymixer.face.demo import run_demo
    from anonymixer.face.pipeline import FaceProtector

    detector = open_detector("yunet")
    with Protector(bundle, key) as protector:
        demo = run_demo(FaceProtector(protector, detector), tmp_path)
    assert demo.path.is_file()
    assert len(demo.results) == 2
    for name, result in demo.results.items():
        assert result.protected >= 1 and result.masked == 0, name
        again = detector.detect(result.frame)
        for face in result.faces:
            centre = face.box[:2] + face.box[2:] / 2
            inside = [f for f in again if np.linalg.norm(f.box[:2] + f.box[2:] / 2 - centre) < 0.25 * face.box[2]]
            assert inside, f"{name}: no face found where the protected face was pasted"


def test_resolve_spec_knows_faces64():
    assert resolve_spec("faces64").config.family == "faces64"


@pytest.fixture(scope="module")
def faces64_onnx(tmp_path_factory):
    """faces64 exported to ONNX (FP32 + FP16), then INT8 calibrated on real faces: the packaged
    photos' faces aligned to the faces64 template (64 px) with a few shifts."""
    import json

    from anonymixer.cli import main
    from anonymixer.face.photos import packaged_photo
    from anonymixer.face.io import read_image

    root = tmp_path_factory.mktemp("faces64_onnx")
    out = root / "onnx"
    assert main(["export", "--model", "faces64", "--out", str(out), "--precision", "fp32,fp16"]) == 0
    detector = open_detector("yunet")
    calib = root / "calib"
    calib.mkdir()
    for name in ("astronaut", "grace_hopper"):
        image = read_image(packaged_photo(name))
        (face,) = detector.detect(image)[:1]
        for dx in range(-2, 3):
            crop, _ = align_face(image, face.landmarks + np.array([dx, -dx]), 64, np.asarray(FACES64_TEMPLATE))
            cv2.imwrite(str(calib / f"{name}_{dx + 2}.png"), crop)
    assert main(["calibrate", "--onnx", str(out), "--calib", str(calib)]) == 0
    return out, json.loads((out / "manifest.json").read_text()), json.loads((out / "accuracy.json").read_text())


def test_faces64_exports_with_fp32_parity_and_its_template_and_reports_fp16_int8_psnr(faces64_onnx):
    out, manifest, accuracy = faces64_onnx
    assert manifest["crop_template"] == [list(p) for p in FACES64_TEMPLATE]
    assert (manifest["input_size"], manifest["style_dim"], manifest["n_latent"]) == (64, 100, 1)
    for stage, graphs in manifest["graphs"].items():
        parity = graphs["fp32"]["parity"]
        assert parity["passed"] and max(parity["batch_1"], parity["batch_3"]) <= 1e-5, stage
    assert manifest["calibration"]["source"] == "folder" and manifest["calibration"]["samples"] == 10
    psnr = {p: v["pipeline"]["image_psnr_db"] for p, v in accuracy["precisions"].items()}
    # Measured: fp16 83 dB, int8 (TensorRT form) 47 dB, int8-ort (QOperator) 32-33 dB.
    assert psnr["fp16"] > 60 and psnr["int8"] > 35 and psnr["int8-ort"] > 28


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_faces64_protects_a_photo_on_onnx_runtime_like_torch(faces64_onnx, tmp_path, key, precision):
    """ORT and torch give the same protected face for the same key (FP32: >= 40 dB; INT8: >= 28 dB),
    and ``protect --onnx`` changes the face in a photo."""
    from anonymixer.face.pipeline import FaceProtector
    from anonymixer.face.photos import packaged_photo
    from anonymixer.face.io import read_image

    out, _, _ = faces64_onnx
    image = read_image(packaged_photo("astronaut"))
    detector = open_detector("yunet")
    results = {}
    with Protector(faces64_bundle(), key) as torch_protector, \
            Protector(str(out), key, backend="ort", precision=precision) as ort_protector:
        for name, protector in (("torch", torch_protector), ("ort", ort_protector)):
            results[name] = FaceProtector(protector, detector).process(image.copy())
    assert results["ort"].protected == 1 and not results["ort"].failures
    (face,) = results["ort"].faces
    x, y, w, h = face.box.astype(int)
    region = (slice(y, y + h), slice(x, x + w))
    assert np.abs(results["ort"].frame[region].astype(int) - image[region]).mean() > 10  # the face was replaced
    diff = results["ort"].frame[region].astype(float) - results["torch"].frame[region]
    psnr = 10 * np.log10(255.0 ** 2 / max(np.mean(diff ** 2), 1e-12))
    # Measured in the face's box: fp32 168 dB (the same bytes but for rounding), int8 (QOperator) 32.8 dB.
    assert psnr >= (40.0 if precision == "fp32" else 28.0), psnr


def test_the_trainer_is_seeded_writes_its_record_and_fine_tunes_from_init(tmp_path):
    """A few steps of ``python -m anonymixer.train.faces64``: the same seed gives the same weights,
    the record (command, log, metrics) is written, and ``--init`` starts from given weights."""
    import json

    from anonymixer.digest import sha256_file
    from anonymixer.train.faces64 import main as train_main

    small = ["--steps", "3", "--batch", "4", "--id-batch", "2", "--id-start", "0.5", "--eval-n", "8",
             "--log-every", "1", "--threads", "1"]
    for run in ("a", "b"):
        assert train_main(["--out", str(tmp_path / run), "--seed", "5", *small]) == 0
    a, b = (torch.load(tmp_path / run / "faces64_encoder.pt", weights_only=True) for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["command.txt", "faces64_encoder.pt", "log.jsonl",
                                                                  "metrics.json"]
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [0, 1, 2] and log[0]["identity"] == 0 and log[2]["identity"] > 0
    init = tmp_path / "a" / "faces64_encoder.pt"
    assert train_main(["--out", str(tmp_path / "c"), "--seed", "5", "--init", str(init), "--lr", "1e-9", *small]) == 0
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["settings"]["init"]["sha256"] == sha256_file(init)
    c = torch.load(tmp_path / "c" / "faces64_encoder.pt", weights_only=True)
    # lr 1e-9: the weights stay where --init put them (BatchNorm running stats move; weights barely)
    assert all(torch.allclose(c[k], a[k], atol=1e-6) for k in a if k.endswith("weight") and "bn" not in k)
    assert train_main(["--out", str(tmp_path / "d"), "--init", str(tmp_path / "missing.pt"), *small]) == 2


@needs_dlib
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_protected_face_is_a_stranger_to_the_original_for_dlib(bundle, seed):
    """What leaves the pipeline must not be the person who came in: dlib (a recogniser we did not
    train against) puts the protected face beyond its own match threshold (0.6) from the original,
    under three keys, on both demo photos. Measured: 0.67-0.86 (a face passed through: about 0.25)."""
    from anonymixer.eval.fr import DlibRecognizer
    from anonymixer.face.io import read_image
    from anonymixer.face.photos import packaged_photo
    from anonymixer.face.pipeline import FaceProtector

    fr, detector = DlibRecognizer(), open_detector("yunet")
    with Protector(bundle, Key(bytes([seed]) * 32)) as protector:
        pipeline = FaceProtector(protector, detector)
        for name in ("astronaut", "grace_hopper"):
            image = read_image(packaged_photo(name))
            result = pipeline.process(image.copy())
            assert result.protected == 1 and not result.failures
            (before,), after = result.faces, detector.detect(result.frame)
            assert after, f"{name}: no face in the protected photo"
            original = fr.embed(fr.align(image, before.landmarks)[None])[0]
            protected = fr.embed(fr.align(result.frame, after[0].landmarks)[None])[0]
            assert np.linalg.norm(original - protected) > 0.6, name
