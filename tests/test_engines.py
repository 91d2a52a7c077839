"""TensorRT engine folders without TensorRT: build plans, profiles, sidecars, one-line refusals, doctor.

Nothing here imports tensorrt or cuda-python (the last tests check that in fresh interpreters).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anonymixer import codestats

from anonymixer.cli import main
from anonymixer.errors import EngineError, ExportError
from anonymixer.export.layout import GRAPHS, write_manifest
from anonymixer.runtime.build import parser_failure
from anonymixer.runtime.buildplan import features, plan_graph, standin
from anonymixer.runtime.engines import (EngineTarget, check_engine, engine_filename, make_sidecar, parse_batch,
                                        parse_version, profile_shapes, sidecar_path)
from anonymixer.digest import sha256_file

ORIN = EngineTarget(tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7")
REPO = Path(__file__).resolve().parents[1]


def real_tensorrt_installed():
    spec = importlib.util.find_spec("tensorrt")
    return spec is not None and spec.origin is not None


# --- versions and optimization profiles (the build plans are tests/test_buildplan.py's) ---------------

def test_versions_parse_to_comparable_tuples():
    assert parse_version("10.3.0.26") == (10, 3, 0, 26)
    assert parse_version("11.0.0rc1") == (11, 0, 0)


def test_batch_option_parses_min_opt_max():
    assert parse_batch("1,4,8") == (1, 4, 8)
    assert parse_batch("8") == (1, 8, 8)
    for bad in ("0,1,2", "4,2,8", "a,b,c", "1,2"):
        with pytest.raises(ValueError, match="MIN,OPT,MAX"):
            parse_batch(bad)


def test_profile_covers_the_batch_range_and_fixes_the_key_material():
    inputs = [{"name": "w_real", "shape": ["batch", 18, 512]}, {"name": "key_matrix", "shape": [512, 512]},
              {"name": "key_offset", "shape": [18, 512]}]
    shapes = profile_shapes(inputs, (1, 2, 8))
    assert shapes["w_real"] == ((1, 18, 512), (2, 18, 512), (8, 18, 512))
    assert shapes["key_matrix"] == ((512, 512),) * 3
    assert shapes["key_offset"] == ((18, 512),) * 3


def test_profile_refuses_key_material_with_a_batch_axis():
    with pytest.raises(ExportError, match="no batch"):
        profile_shapes([{"name": "key_offset", "shape": ["batch", 18, 512]}], (1, 2, 8))


def test_profile_keeps_fixed_shapes_and_refuses_other_dynamic_axes():
    assert profile_shapes([{"name": "z", "shape": [1, 512]}], (1, 1, 4))["z"] == ((1, 512),) * 3
    with pytest.raises(ExportError, match="only the first"):
        profile_shapes([{"name": "face", "shape": ["batch", 3, "h", "w"]}], (1, 1, 4))


# --- sidecars: refusing engines built elsewhere, or damaged ---------------------------------------------

@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "engines" / engine_filename("encoder", "fp16")
    path.parent.mkdir()
    path.write_bytes(b"serialized engine bytes" * 10)
    onnx = tmp_path / "encoder.fp16.onnx"
    onnx.write_bytes(b"onnx")
    inputs = [{"name": "face", "shape": ["batch", 3, 256, 256]}]
    plan = plan_graph(features(standin("10.3.0")), "encoder", "fp16", onnx.name, inputs, (1, 1, 4))
    sidecar = make_sidecar("encoder", "fp16", ORIN, plan, plan.profile,
                           onnx, sha256_file(onnx), engine_sha256=sha256_file(path),
                           engine_bytes=path.stat().st_size, onnx_dir=tmp_path / "export", batch=(1, 1, 4),
                           anonymixer_version="test")
    sidecar_path(path).write_text(json.dumps(sidecar))
    return path


def assert_one_line_rebuild(exc_info, *needles):
    message = str(exc_info.value)
    assert "\n" not in message, message
    assert "anonymixer build --onnx" in message and "--precision fp16 --batch 1,1,4" in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def test_an_engine_on_its_own_gpu_and_tensorrt_passes_the_check(engine):
    sidecar = check_engine(engine, ORIN)
    assert sidecar["strongly_typed"] is True and sidecar["builder_flags"] == [] and sidecar["graph_precision"] == "fp16"
    assert sidecar["profile"]["face"]["max"] == [4, 3, 256, 256]


def test_an_engine_from_another_tensorrt_version_is_refused_with_the_rebuild_command(engine):
    with pytest.raises(EngineError) as info:
        check_engine(engine, EngineTarget("10.16.0.1", "Orin", "8.7"))
    assert_one_line_rebuild(info, "TensorRT 10.3.0.30", "TensorRT 10.16.0.1", str(engine))


def test_an_engine_from_another_gpu_is_refused_with_the_rebuild_command(engine):
    with pytest.raises(EngineError) as info:
        check_engine(engine, EngineTarget("10.3.0.30", "NVIDIA H100 80GB HBM3", "9.0"))
    assert_one_line_rebuild(info, "Orin", "H100", "compute capability 9.0")


def test_a_corrupt_engine_file_is_refused_with_the_rebuild_command(engine):
    engine.write_bytes(engine.read_bytes()[:-1] + b"!")
    with pytest.raises(EngineError) as info:
        check_engine(engine, ORIN)
    assert_one_line_rebuild(info, "corrupt engine file", str(engine))


@pytest.mark.parametrize("damage,needle", [("delete", "missing sidecar"), ("garble", "corrupt sidecar"),
                                           ("foreign", "not an anonymixer engine sidecar")])
def test_an_engine_without_a_usable_sidecar_is_refused(engine, damage, needle):
    side = sidecar_path(engine)
    {"delete": side.unlink, "garble": lambda: side.write_text("{"),
     "foreign": lambda: side.write_text("[]")}[damage]()
    with pytest.raises(EngineError) as info:
        check_engine(engine, ORIN)
    assert needle in str(info.value) and "anonymixer build" in str(info.value) and "\n" not in str(info.value)


def test_parser_errors_become_one_line_with_a_count():
    error = parser_failure(Path("x/encoder.onnx"), "10.3.0.30",
                           ["In node 3 (Conv):\n UNSUPPORTED_NODE: bad", "second", "third"])
    assert str(error).count("\n") == 0
    assert "x/encoder.onnx" in str(error) and "UNSUPPORTED_NODE" in str(error) and "and 2 more" in str(error)


# --- without TensorRT --------------------------------------------------------------------------------

@pytest.fixture
def manifest_only(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    codestats.save(codestats.identity(64), folder)
    stats = folder / codestats.STATS_FILE
    write_manifest(folder, {
        "format": "anonymixer-onnx", "version": 2, "graphs": {},
        "model": {"name": "tiny", "description": "test", "is_random": True},
        "input_size": 256, "style_dim": 64, "n_latent": 10, "output_resolution": 64, "mixer_mode": "rotate",
        "files": {stats.name: {"sha256": sha256_file(stats), "bytes": stats.stat().st_size}}})
    return folder


@pytest.mark.skipif(real_tensorrt_installed(), reason="TensorRT is installed here")
def test_build_without_tensorrt_is_a_one_line_error_with_the_pip_command(manifest_only, tmp_path, capsys):
    code = main(["build", "--onnx", str(manifest_only), "--out", str(tmp_path / "engines")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "TensorRT is not installed" in err and "pip install" in err


def test_build_refuses_a_bad_batch_option(manifest_only, tmp_path, capsys):
    code = main(["build", "--onnx", str(manifest_only), "--out", str(tmp_path / "e"), "--batch", "4,2,1"])
    assert code == 2 and "--batch" in capsys.readouterr().err


def test_trt_backend_on_a_folder_without_engines_says_how_to_build_them(manifest_only):
    from anonymixer.runtime.trt import TrtBackend

    with pytest.raises(EngineError, match="anonymixer build"):
        TrtBackend(manifest_only)
    with pytest.raises(EngineError, match="not an engine folder"):
        TrtBackend(manifest_only.parent)


@pytest.mark.skipif(real_tensorrt_installed(), reason="TensorRT is installed here")
def test_trt_backend_without_tensorrt_names_the_pip_command(manifest_only):
    from anonymixer.runtime.trt import TrtBackend

    manifest = json.loads((manifest_only / "manifest.json").read_text())
    manifest["engine_folder"] = {"onnx_dir": "export", "batch": [1, 1, 8]}
    for stage in GRAPHS:
        for name in (engine_filename(stage, "fp16"), engine_filename(stage, "fp16") + ".json"):
            (manifest_only / name).write_bytes(b"x")
            manifest["files"][name] = {"sha256": sha256_file(manifest_only / name), "bytes": 1}
    write_manifest(manifest_only, manifest)
    with pytest.raises(EngineError, match="pip install"):
        TrtBackend(manifest_only)


# --- fresh interpreters: the doctor, and the CPU import graph -------------------------------------------

def run_python(code):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)


def test_doctor_runs_and_says_plainly_what_is_absent():
    result = run_python("import sys; from anonymixer.cli import main; sys.exit(main(['doctor']))")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("Python:", "numpy:", "onnxruntime:", "TensorRT:", "CUDA driver:", "GPU:", "backends:"):
        assert name in out, (name, out)
    for backend in ("torch", "ort", "ort-cuda", "trt"):
        assert f"  {backend} " in out, (backend, out)
    has_driver = Path("/proc/driver/nvidia/version").exists()
    if not real_tensorrt_installed() and not has_driver:
        assert "TensorRT and CUDA are absent on this machine" in out, out
        assert "trt       NOT usable" in out and "pip install 'anonymixer[trt]'" in out, out


GPU_MODULES = ("tensorrt", "tensorrt_bindings", "tensorrt_libs", "cuda.bindings", "cuda.cudart", "cuda.cuda",
               "pycuda", "cupy")
# torch >= 2.9 imports cuda.bindings.runtime itself when cuda-python is installed (torch/cuda/_utils.py),
# and cuda-bindings' .pth file pre-imports a bare 'cuda' namespace: those are not imports of ours, so
# each check starts from what the third-party libraries imported on their own.
RUNTIME_GRAPH = """
import importlib, sys
import numpy, onnxruntime
before = set(sys.modules)
for name in ('cli', 'runtime', 'runtime.ort', 'runtime.trt', 'runtime.build', 'runtime.cuda', 'runtime.engines',
             'runtime.doctor', 'runtime.stream', 'runtime.manifest', 'runtime.protector'):
    importlib.import_module('anonymixer.' + name)
print('IMPORTED:', sorted(m for m in set(sys.modules) - before if m.startswith(%r)))
""" % (GPU_MODULES,)
# Third-party packages of optional extras that a module may need at import time; a module that
# lacks one of these is reported as SKIPPED. Any other ImportError (one of ours, a typo, a missing
# name) is a FAILED import.
OPTIONAL_PACKAGES = ("tensorrt", "dlib", "face_recognition_models", "matplotlib", "ray",
                     # the terminal extra (anonymixer.terminal.service and .guard)
                     "starlette", "uvicorn", "python_multipart", "prometheus_client")
FULL_GRAPH = """
import importlib, pkgutil, sys
import numpy, onnxruntime, onnx, cv2, torch
before = set(sys.modules)
import anonymixer
skipped, failed = [], []
for info in pkgutil.walk_packages(anonymixer.__path__, 'anonymixer.'):
    if info.name.endswith('.__main__'):   # runs the command line when imported
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        missing = (exc.name or '') if isinstance(exc, ModuleNotFoundError) else ''
        if missing.split('.')[0] in %r:   # an optional extra this machine lacks
            skipped.append(info.name)
        else:
            failed.append(f'{info.name}: {type(exc).__name__}: {exc}')
import numpy as np
from anonymixer.keys import Key
from anonymixer.runtime import Protector
p = Protector('random:tiny', Key(bytes(32)))
list(p.protect_many([np.zeros((1, 256, 256, 3), np.uint8)] * 2, inflight=2))
print('IMPORTED:', sorted(m for m in set(sys.modules) - before if m.startswith(%r)))
print('SKIPPED:', skipped)
print('FAILED:', failed)
""" % (OPTIONAL_PACKAGES, GPU_MODULES)


def test_the_runtime_import_graph_never_imports_tensorrt_or_cuda():
    result = run_python(RUNTIME_GRAPH)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORTED: []" in result.stdout, result.stdout


def test_the_whole_cpu_import_graph_and_a_cpu_run_never_import_tensorrt_or_cuda():
    result = run_python(FULL_GRAPH)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORTED: []" in result.stdout, result.stdout
    assert "anonymixer.runtime.trt" not in result.stdout.split("SKIPPED:")[1]
    assert "FAILED: []" in result.stdout, result.stdout


def test_this_test_process_has_not_imported_tensorrt():
    assert not [m for m in sys.modules if m.startswith(("tensorrt", "pycuda"))]


@pytest.mark.skipif(Path("/proc/driver/nvidia/version").exists(), reason="this machine has an NVIDIA driver")
def test_gpu_check_says_there_is_no_cuda_device_and_exits_cleanly():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout


@pytest.mark.skipif(real_tensorrt_installed(), reason="TensorRT is installed here")
def test_gpu_check_trt_says_there_is_nothing_to_check_without_tensorrt_and_leaves_results_alone():
    results = REPO / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--trt"], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "nothing to check" in result.stdout and "TensorRT is not installed" in result.stdout
    assert results.read_bytes() == before
