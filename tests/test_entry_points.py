"""What people script against besides the commands: `python -m anonymixer`, the type marker and the
schemas in the wheel, shell completion."""

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from anonymixer import __version__

REPO = Path(__file__).resolve().parents[1]


def test_python_dash_m_anonymixer_is_the_command_line():
    result = subprocess.run([sys.executable, "-m", "anonymixer", "--version"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"anonymixer {__version__}"


def test_the_wheel_ships_the_type_marker_and_the_json_schemas(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             str(REPO), "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "setuptools" in result.stderr:
        pytest.skip(f"cannot build a wheel here without build isolation: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("anonymixer-*.whl"))).namelist()
    assert "anonymixer/py.typed" in names
    for schema in ("envelope", "error", "doctor", "protect", "report", "bench", "evaluate"):
        assert f"anonymixer/schemas/{schema}.json" in names


@pytest.mark.skipif(importlib.util.find_spec("argcomplete") is None,
                    reason="shell completion is optional: pip install 'anonymixer[completion]'")
def test_shell_completion_completes_commands_and_options(tmp_path):
    def complete(line):
        env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
               "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(tmp_path / "out")}
        subprocess.run([sys.executable, "-m", "anonymixer"], env=env, cwd=REPO, timeout=120, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return (tmp_path / "out").read_text().split()

    assert complete("anonymixer pro") == ["protect"]
    assert "--precisions" in complete("anonymixer bench --pre")
