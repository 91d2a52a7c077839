"""`anonymixer export` and `anonymixer calibrate` on the command line (tiny model)."""

import json

import cv2
import numpy as np
import pytest

from anonymixer.cli import main


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    code = main(["export", "--model", "random:tiny", "--out", str(out), "--layer-mask", "2-6"])
    return code, out


def test_export_writes_the_fp32_graphs_and_a_manifest(cli_export, capsys):
    code, out = cli_export
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["code_stats.npz", "encoder.onnx", "generator.onnx",
                                                     "manifest.json", "mapping.onnx", "mixer.onnx"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layer_mask"] == [2, 3, 4, 5, 6]
    assert sorted(manifest["files"]) == ["code_stats.npz", "encoder.onnx", "generator.onnx", "mapping.onnx",
                                         "mixer.onnx"]
    assert all(manifest["graphs"][s]["fp32"]["parity"]["passed"] for s in manifest["graphs"])


def test_export_refuses_to_overwrite_without_force(cli_export, capsys):
    _, out = cli_export
    assert main(["export", "--model", "random:tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err and len(err.strip().splitlines()) == 1


def test_export_refuses_an_unknown_precision_in_one_line(tmp_path, capsys):
    assert main(["export", "--model", "random:tiny", "--out", str(tmp_path / "x"), "--precision", "fp8"]) == 2
    err = capsys.readouterr().err
    assert "fp8" in err and len(err.strip().splitlines()) == 1


def test_calibrate_adds_int8_graphs_from_a_folder_of_faces_and_prints_a_summary(cli_export, tmp_path, capsys):
    _, out = cli_export
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate((256, 300, 128, 256)):
        cv2.imwrite(str(faces / f"face{i}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    (faces / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    code = main(["calibrate", "--onnx", str(out), "--calib", str(faces), "--calib-method", "percentile",
                 "--keep-fp", "convs.3/", "to_rgbs.1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert (out / "generator.int8.onnx").is_file() and (out / "accuracy.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibration"]["source"] == "folder" and manifest["calibration"]["samples"] == 4
    assert manifest["calibration"]["skipped"] == 1
    kept = manifest["graphs"]["generator"]["int8"]["int8"]["kept_fp"]
    assert kept["/synthesis/convs.3/conv/Conv"] == "--keep-fp convs.3/"
    assert kept["/synthesis/to_rgbs.1/conv/Conv_output_0"] == "writes the RGB image"  # rules name their reason
    for text in ("encoder.int8.onnx", "image PSNR", "int8: calibrated on 4 faces", "percentile", "skipped 1"):
        assert text in printed, text


def test_calibrate_with_a_missing_folder_is_a_one_line_error(cli_export, tmp_path, capsys):
    _, out = cli_export
    assert main(["calibrate", "--onnx", str(out), "--calib", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "none" in err and len(err.strip().splitlines()) == 1


def test_export_refuses_a_resolution_the_generator_cannot_stop_at(tmp_path, capsys):
    assert main(["export", "--model", "random:tiny", "--out", str(tmp_path / "x"), "--resolution", "48"]) == 2
    err = capsys.readouterr().err
    assert "48" in err and len(err.strip().splitlines()) == 1
