"""`--json`: one JSON object on stdout that matches its schema in anonymixer/schemas/, human lines
on stderr; `protect` writes OUT/report.json."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from facekit import needs_yunet, photo, protect

from anonymixer.schemas import SCHEMAS, load_schema, validate

pytest.importorskip("jsonschema", reason="the schema tests need jsonschema (dev extra)")
REPO = Path(__file__).resolve().parents[1]


def only_object(stdout):
    """The one JSON object a --json run printed (stdout holds nothing else)."""
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout[-2000:]
    return json.loads(lines[0])


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_is_a_valid_draft_2020_12_schema_that_ships_in_the_package(name):
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(load_schema(name))


def test_doctor_json_is_one_object_on_stdout_that_matches_its_schema_and_the_human_lines_go_to_stderr():
    result = subprocess.run([sys.executable, "-m", "anonymixer", "doctor", "--json"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    data = only_object(result.stdout)
    validate("doctor", data)
    assert data["command"] == "doctor" and data["exit_code"] == 0
    assert "backends:" in result.stderr


@needs_yunet
@pytest.mark.usefixtures("reuse_tiny_model")
def test_protect_json_and_its_report_json_match_their_schemas_with_one_entry_per_input(tmp_path, key_file, capsys):
    cv2.imwrite(str(tmp_path / "face.png"), photo("astronaut"))
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((200, 300, 3), 200, np.uint8))
    (tmp_path / "bad.jpg").write_text("not a photo")
    inputs = [tmp_path / "face.png", tmp_path / "wall.png", tmp_path / "bad.jpg"]
    capsys.readouterr()
    assert protect(inputs, key_file, tmp_path / "out", "--json") == 1
    printed = capsys.readouterr()
    data = only_object(printed.out)
    validate("protect", data)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    validate("report", report)
    assert [entry["status"] for entry in report["files"]] == ["protected", "no-face", "failed"]
    assert data["files"] == report["files"] and data["exit_code"] == 1
    assert "1 input(s) failed" in printed.err


def test_a_command_that_cannot_run_writes_the_error_object_under_json(tmp_path, capsys):
    from anonymixer.cli import main

    assert main(["protect", str(tmp_path), "--key", str(tmp_path / "missing.key"), "--out", str(tmp_path / "o"),
                 "--json"]) == 2
    printed = capsys.readouterr()
    data = only_object(printed.out)
    validate("error", data)
    assert data["exit_code"] == 2 and "missing.key" in data["error"] and "missing.key" in printed.err
