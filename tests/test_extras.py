"""Extras that cannot break an environment: one ONNX Runtime package at most, and a doctor that
detects two and says how to mend it (the mend is checked by applying it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anonymixer.runtime.doctor import ORT_DISTRIBUTIONS, ort_conflict

REPO = Path(__file__).resolve().parents[1]


def pyproject():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def ort_packages(requirements):
    return {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requirements} & set(ORT_DISTRIBUTIONS)


def test_no_extra_and_no_base_dependency_installs_a_second_onnx_runtime():
    project = pyproject()
    assert not ort_packages(project["dependencies"])   # the base cannot pull onnxruntime beside onnxruntime-gpu
    for name, requirements in project["optional-dependencies"].items():
        assert len(ort_packages(requirements)) <= 1, name
    assert ort_packages(project["optional-dependencies"]["cpu"]) == {"onnxruntime"}
    assert ort_packages(project["optional-dependencies"]["gpu"]) == {"onnxruntime-gpu"}


def apply(command, installed):
    """``installed`` after the pip commands of ``command`` (``pip uninstall -y A B && pip install A==V``)."""
    after = dict(installed)
    for part in command.split("&&"):
        words = part.split()
        if words[:2] == ["pip", "uninstall"]:
            for name in words[2:]:
                after.pop(name, None)
        elif words[:2] == ["pip", "install"]:
            name, _, version = words[-1].partition("==")
            after[name] = version
    return after


def test_two_onnx_runtimes_are_a_warning_whose_mend_leaves_exactly_the_gpu_one():
    installed = {"onnxruntime": "1.20.1", "onnxruntime-gpu": "1.20.1"}
    warning = ort_conflict(installed, machine="x86_64")
    assert warning and "onnxruntime 1.20.1" in warning and "onnxruntime-gpu 1.20.1" in warning
    mend = warning.split(": ", 1)[1]
    assert mend == "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu==1.20.1"
    after = apply(mend, installed)
    assert after == {"onnxruntime-gpu": "1.20.1"} and ort_conflict(after) is None


def test_on_a_jetson_the_mend_points_at_nvidias_wheel_not_pypi():
    warning = ort_conflict({"onnxruntime": "1.20.1", "onnxruntime-gpu": "1.20.0"}, machine="aarch64")
    assert "NVIDIA's onnxruntime-gpu==1.20.0 wheel for your JetPack" in warning


def test_one_onnx_runtime_is_no_warning():
    assert ort_conflict({"onnxruntime": "1.20.1"}) is None and ort_conflict({}) is None


def test_doctor_detects_two_installed_onnx_runtimes_and_prints_the_mend(tmp_path):
    """A fake onnxruntime-gpu distribution beside the real onnxruntime, seen by importlib.metadata."""
    info = tmp_path / "onnxruntime_gpu-1.20.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.20.1\n")
    code = ("import sys; sys.path.append(sys.argv[1]); from anonymixer.cli import main; "
            "sys.exit(main(['doctor', '--json']))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert any("pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu==1.20.1" in w
               for w in warnings), warnings
    assert "WARNING: 2 ONNX Runtime packages are installed" in result.stderr
