"""The ONNX Runtime backend on a real export of the tiny model: same faces as torch, in order, clear errors."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from anonymixer.digest import sha256_file
from anonymixer.errors import BackendError, ExportError
from anonymixer.export.layout import write_manifest
from anonymixer.export.onnx import export_onnx
from anonymixer.runtime import Protector, open_backend
from anonymixer.runtime.ort import CPU, CUDA, TENSORRT, OrtBackend, choose_providers
from anonymixer.runtime.protector import faces_to_input


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_bundle):
    folder = tmp_path_factory.mktemp("export") / "tiny"
    export_onnx(tiny_bundle, folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def torch_protector(tiny_bundle):
    from anonymixer.keys import Key
    from conftest import TEST_SECRET

    return Protector(tiny_bundle, Key(TEST_SECRET))


@pytest.fixture
def export_copy(tiny_export, tmp_path):
    """A private copy of the export, for tests that break it."""
    return shutil.copytree(tiny_export, tmp_path / "tiny")


def frames(count=4, batch=2, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(batch, 256, 256, 3), dtype=np.uint8) for _ in range(count)]


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("inflight", [1, 3])
def test_ort_gives_the_same_protected_faces_as_torch_in_order(tiny_export, torch_protector, key, inflight):
    protector = Protector(str(tiny_export), key, backend="ort")
    inputs = [faces_to_input(f, 256) for f in frames()]
    expected = [torch_protector.protect_tensor(x) for x in inputs]
    got = list(protector.protect_tensor_many(inputs, inflight=inflight))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):     # every batch differs, so a swap would show
        assert relative_error(a, b) <= 1e-5
    for name, value in protector.key_feeds.items():
        assert np.abs(value - torch_protector.key_feeds[name]).max() <= 1e-5


def test_all_backends_give_the_same_protected_faces_for_the_same_key(tiny_export, torch_protector, key):
    """ORT vs torch on uint8 faces: PSNR >= 40 dB (the keyed-mixer acceptance figure)."""
    protector = Protector(str(tiny_export), key, backend="ort")
    assert protector.info.mixer_mode == torch_protector.info.mixer_mode == "project"
    batch = frames(1, batch=3)[0]
    a, b = protector.protect(batch).astype(np.float64), torch_protector.protect(batch).astype(np.float64)
    mse = max(float(np.mean((a - b) ** 2)), 1e-12)
    assert 10 * np.log10(255.0**2 / mse) >= 40.0


def test_ort_uint8_faces_match_torch_within_one_level(tiny_export, torch_protector, key):
    protector = Protector(str(tiny_export), key, backend="ort")
    for batch, out in zip(frames(2), protector.protect_many(frames(2), inflight=2), strict=True):
        diff = np.abs(out.astype(int) - torch_protector.protect(batch).astype(int))
        assert diff.max() <= 1


def test_io_binding_path_gives_the_same_result_as_plain_run(tiny_export, key):
    plain = Protector(str(tiny_export), key, backend="ort", providers="cpu")
    bound = Protector(str(tiny_export), key, backend="ort", providers="cpu", io_binding=True)
    assert "IO binding" in bound.backend.describe()
    x = faces_to_input(frames(1)[0], 256)
    np.testing.assert_array_equal(bound.protect_tensor(x), plain.protect_tensor(x))
    streamed = list(bound.protect_tensor_many([x, x[:1]], inflight=2))
    assert len(streamed) == 2
    np.testing.assert_array_equal(streamed[0], plain.protect_tensor(x))
    assert streamed[1].shape[0] == 1


@pytest.mark.skipif(CUDA not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu with the CUDA execution provider (and an NVIDIA GPU)")
def test_cuda_provider_keeps_stages_on_the_device_and_matches_cpu(tiny_export, key):
    gpu = Protector(str(tiny_export), key, backend="ort", providers="cuda")
    cpu = Protector(str(tiny_export), key, backend="ort", providers="cpu")
    assert gpu.backend.stage("encoder").io_binding
    x = faces_to_input(frames(1)[0], 256)
    assert relative_error(next(gpu.protect_tensor_many([x], inflight=1)), cpu.protect_tensor(x)) <= 1e-4


def test_ort_is_registered_with_open_backend_and_describes_itself(tiny_export):
    backend = open_backend("ort", str(tiny_export), threads=1)
    assert backend.info.name == "tiny" and backend.info.output_resolution == 64
    assert backend.info.is_random
    assert "CPU" in backend.describe()


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendError, match="torch, ort, trt"):
        open_backend("tensorflow", "x")


def one_line(exc_info, *needles):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert str(needle) in message, (needle, message)


def test_missing_manifest_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(ExportError) as info:
        OrtBackend(tmp_path)
    one_line(info, tmp_path / "manifest.json", "anonymixer export")


def test_corrupt_manifest_is_a_one_line_error_naming_it(export_copy):
    (export_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError) as info:
        OrtBackend(export_copy)
    one_line(info, export_copy / "manifest.json", "corrupt")


def test_foreign_manifest_is_refused(export_copy):
    (export_copy / "manifest.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ExportError) as info:
        OrtBackend(export_copy)
    one_line(info, "anonymixer-onnx")


def test_missing_onnx_file_is_a_one_line_error_naming_it(export_copy):
    (export_copy / "generator.onnx").unlink()
    with pytest.raises(ExportError) as info:
        OrtBackend(export_copy)
    one_line(info, export_copy / "generator.onnx", "missing")


def test_changed_code_statistics_are_refused(export_copy):
    """Other statistics would give every key another map: the file is checked against the manifest."""
    from anonymixer import codestats

    codestats.save(codestats.identity(64), export_copy)
    with pytest.raises(ExportError) as info:
        OrtBackend(export_copy)
    one_line(info, export_copy / "code_stats.npz", "sha256")


def test_missing_code_statistics_are_a_one_line_error(export_copy):
    (export_copy / "code_stats.npz").unlink()
    with pytest.raises(ExportError) as info:
        OrtBackend(export_copy)
    one_line(info, export_copy / "code_stats.npz", "anonymixer export")


def test_corrupt_onnx_file_is_a_one_line_error_naming_it(export_copy):
    path = export_copy / "mixer.onnx"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ExportError) as info:
        OrtBackend(export_copy)
    one_line(info, path, "sha256")


def test_unloadable_onnx_file_is_a_one_line_error_even_when_its_hash_is_listed(export_copy):
    path = export_copy / "mixer.onnx"
    path.write_bytes(b"garbage")
    manifest = json.loads((export_copy / "manifest.json").read_text())
    listed = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest["files"]["mixer.onnx"] = listed
    manifest["graphs"]["mixer"]["fp32"]["sha256"] = listed["sha256"]
    write_manifest(export_copy, manifest)
    with pytest.raises(ExportError) as info:
        OrtBackend(export_copy)
    one_line(info, path, "onnxruntime cannot load")


def test_missing_precision_says_how_to_export_it(tiny_export):
    with pytest.raises(ExportError) as info:
        OrtBackend(tiny_export, precision="int8")
    one_line(info, "int8", "--precision int8")


def test_output_resolution_must_match_the_export(tiny_export):
    with pytest.raises(ExportError) as info:
        OrtBackend(tiny_export, output_resolution=32)
    one_line(info, "64", "--resolution 32")
    assert OrtBackend(tiny_export, output_resolution=64).info.output_resolution == 64


def test_auto_providers_take_tensorrt_and_cuda_when_present_and_cpu_last():
    names = [p if isinstance(p, str) else p[0] for p in choose_providers("auto", [TENSORRT, CUDA, CPU])]
    assert names == [TENSORRT, CUDA, CPU]
    assert choose_providers("auto", ["AzureExecutionProvider", CPU]) == [CPU]


def test_asking_for_a_missing_provider_names_the_pip_command():
    with pytest.raises(BackendError, match="onnxruntime-gpu|anonymixer\\[gpu\\]"):
        choose_providers("cuda", [CPU])


# --- the command line: --onnx / --engines / --backend / --inflight -------------------------------------

@pytest.fixture
def crops(tmp_path):
    import cv2

    folder = tmp_path / "crops"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        cv2.imwrite(str(folder / f"face{i}.png"), rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8))
    return folder


def test_protect_aligned_on_onnx_with_frames_in_flight_matches_torch(tiny_export, tiny_bundle, crops, key_file,
                                                                       tmp_path, capsys):
    import cv2

    from anonymixer.cli import main

    common = ["protect", "--aligned", str(crops), "--key", str(key_file), "--batch", "1"]
    assert main([*common, "--onnx", str(tiny_export), "--inflight", "3", "--out", str(tmp_path / "ort")]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "protected 3 of 3" in printed
    bundle_file = tmp_path / "tiny.bundle"
    from anonymixer.models.bundle import save_bundle

    save_bundle(tiny_bundle, bundle_file)
    assert main([*common, "--model", str(bundle_file), "--out", str(tmp_path / "torch")]) == 0
    for name in ("face0.png", "face1.png", "face2.png"):
        a = cv2.imread(str(tmp_path / "ort" / name)).astype(int)
        b = cv2.imread(str(tmp_path / "torch" / name)).astype(int)
        assert np.abs(a - b).max() <= 1, name


@pytest.mark.parametrize("options,needle", [
    (["--backend", "trt"], "--engines DIR"),
    (["--backend", "ort"], "--onnx DIR"),
    (["--onnx", "x", "--engines", "y"], "not both"),
    (["--engines", "y", "--backend", "ort"], "trt backend"),
])
def test_protect_backend_options_that_do_not_fit_are_one_line_errors(crops, key_file, tmp_path, capsys, options,
                                                                    needle):
    from anonymixer.cli import main

    code = main(["protect", "--aligned", str(crops), "--key", str(key_file), "--model", "random:tiny",
                 "--out", str(tmp_path / "out"), *options])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
