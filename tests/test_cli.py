"""The command line: keygen and protect --aligned, including bad inputs and secret hygiene."""

import json
import logging
import os
import stat

import cv2
import numpy as np
import pytest

from anonymixer.cli import main
from anonymixer.face.photos import main as photos_main


@pytest.fixture
def astronaut_crop(tmp_path):
    """A real photo crop: the face of scikit-image's astronaut, resized to 256x256 (README's sample)."""
    path = tmp_path / "in" / "astronaut.png"
    assert photos_main(["--aligned-sample", str(path.parent)]) == 0
    return path


def secret_of(path):
    return json.loads(path.read_text())["secret"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_keygen_writes_a_0600_file_and_prints_only_the_fingerprint(tmp_path, capsys):
    path = tmp_path / "k.key"
    assert main(["keygen", "--out", str(path)]) == 0
    out = capsys.readouterr()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "fingerprint:" in out.out
    assert secret_of(path) not in out.out + out.err


def test_keygen_refuses_to_overwrite_a_key(key_file, capsys):
    assert main(["keygen", "--out", str(key_file)]) == 2
    err = capsys.readouterr().err
    assert str(key_file) in err and len(err.strip().splitlines()) == 1


def test_protect_aligned_writes_one_image_per_input(tmp_path, key_file, astronaut_crop, capsys):
    out_dir = tmp_path / "out"
    code = main(["protect", "--aligned", str(astronaut_crop), "--key", str(key_file),
                 "--model", "random:tiny", "--out", str(out_dir)])
    printed = capsys.readouterr().out
    assert code == 0
    result = cv2.imread(str(out_dir / "astronaut.png"))
    assert result.shape == (256, 256, 3)
    assert not np.array_equal(result, cv2.imread(str(astronaut_crop)))
    assert "random weights" in printed


def test_protect_aligned_reports_bad_files_by_name_and_finishes_the_rest(tmp_path, key_file, astronaut_crop,
                                                                         capsys):
    folder = astronaut_crop.parent
    (folder / "notes.png").write_text("this is not an image")
    cv2.imwrite(str(folder / "small.png"), np.zeros((100, 100, 3), np.uint8))
    cv2.imwrite(str(folder / "gray.png"), np.zeros((256, 256), np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    out_dir = tmp_path / "out"
    code = main(["protect", "--aligned", str(folder), "--key", str(key_file), "--model", "random:tiny",
                 "--out", str(out_dir)])
    printed = capsys.readouterr().out
    assert code == 1
    assert (out_dir / "astronaut.png").is_file()
    assert sorted(p.name for p in out_dir.iterdir()) == ["astronaut.png", "report.json"]
    failure_lines = [line.strip() for line in printed.splitlines() if line.startswith("  ")]
    for name, problem in [("notes.png", "not a readable image"), ("small.png", "256x256"),
                          ("gray.png", "grayscale"), ("empty.jpg", "empty")]:
        assert any(name in line and problem in line for line in failure_lines), (name, printed)


def test_protect_never_prints_or_logs_the_secret(tmp_path, key_file, astronaut_crop, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    main(["-v", "protect", "--aligned", str(astronaut_crop), "--key", str(key_file), "--model", "random:tiny",
          "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    secret = secret_of(key_file)
    assert secret not in out.out + out.err + caplog.text
    assert secret[:16] not in out.out + out.err + caplog.text


def test_protect_with_a_broken_key_file_is_a_one_line_error(tmp_path, astronaut_crop, capsys):
    bad = tmp_path / "bad.key"
    bad.write_text("{}")
    code = main(["protect", "--aligned", str(astronaut_crop), "--key", str(bad), "--model", "random:tiny",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and len(err.strip().splitlines()) == 1


def test_unknown_model_spec_is_a_one_line_error(tmp_path, key_file, astronaut_crop, capsys):
    code = main(["protect", "--aligned", str(astronaut_crop), "--key", str(key_file), "--model", "random:huge",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "huge" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("module", ["anonymixer", "anonymixer.cli"])
def test_python_dash_m_runs_the_command_line(module):
    import subprocess
    import sys

    from anonymixer import __version__

    result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"anonymixer {__version__}"


def test_every_command_group_registers_its_commands():
    from anonymixer.cli import GROUPS, build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"keygen", "fingerprint", "protect", "rekey", "demo", "import", "export", "calibrate", "build",
            "evaluate", "doctor", "bench"} <= commands
    assert all(hasattr(group, "register") for group in GROUPS)
