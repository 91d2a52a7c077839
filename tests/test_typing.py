"""mypy on the package, with the TensorRT modules checked against tensorrt-stubs (no TensorRT needed).

tensorrt-stubs 10.13.0.35.1 cannot be used as installed: its ``tensorrt/`` folder has no
``py.typed`` (so mypy skips it) and a few generated signatures are not valid Python (a parameter
named ``in``, a required parameter after defaults). We copy the stubs into mypy's cache folder with
those lines repaired and put the copy on MYPYPATH.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUB_CACHE = REPO / ".mypy_cache" / "tensorrt-stubs-repaired"


def stub_source():
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        return None
    site = Path(spec.origin).parent.parent
    return site if (site / "tensorrt" / "__init__.pyi").is_file() else None


def repair(text):
    """Make the generated stubs parse: ``in:`` -> ``in_:``; a required parameter after defaults gets one."""
    text = re.sub(r"\bin: list\[", "in_: list[", text)
    return re.sub(r"(= None, channel_axis: int)\)", r"\1 = ...)", text)


def repaired_stubs(site):
    for package in ("tensorrt", "tensorrt_bindings"):
        for source in (site / package).glob("*.pyi"):
            target = STUB_CACHE / package / source.name
            text = repair(source.read_text(encoding="utf-8"))
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    return STUB_CACHE


def test_mypy_passes_on_the_package_with_tensorrt_checked_against_its_stubs():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install 'anonymixer[dev]')")
    site = stub_source()
    if site is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    env = {**os.environ, "MYPYPATH": str(repaired_stubs(site))}
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".mypy_cache" / "with-stubs"),
                             "anonymixer"], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_stubs_are_really_used_for_tensorrt(tmp_path):
    """A misspelt TensorRT call must fail, or the test above would pass against ``Any``."""
    if importlib.util.find_spec("mypy") is None or stub_source() is None:
        pytest.skip("needs mypy and tensorrt-stubs")
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\ntrt.Builder(trt.Logger()).create_netwrk(0)\n")
    env = {**os.environ, "MYPYPATH": str(repaired_stubs(stub_source()))}
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                             "--cache-dir", str(REPO / ".mypy_cache" / "with-stubs"), str(probe)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert "create_network" in result.stdout, result.stdout
