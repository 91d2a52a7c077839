"""`anonymixer terminal serve`: the command starts the service, refuses an open token file, and
stops cleanly on SIGTERM without printing the token or the key."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the service needs the terminal extra: pip install 'anonymixer[terminal]'")

import httpx  # noqa: E402
from conftest import cli_refuses  # noqa: E402
from facekit import needs_yunet  # noqa: E402
from servicekit import TOKEN  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def token_file(folder, mode):
    path = folder / "token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, mode)
    return path


def test_serve_refuses_a_token_file_open_to_others_in_one_line(tmp_path, key_file, capsys):
    path = token_file(tmp_path, 0o644)
    cli_refuses(capsys, ["terminal", "serve", "--db", str(tmp_path / "site.db"), "--key", str(key_file),
                         "--token-file", str(path)], str(path), "chmod 600")
    assert not (tmp_path / "site.db").exists()      # refused before the store or a model was opened


@needs_yunet
def test_serve_answers_on_its_port_and_stops_on_sigterm_without_printing_secrets(tmp_path, key_file):
    command = [sys.executable, "-m", "anonymixer", "terminal", "serve", "--db", str(tmp_path / "site.db"),
               "--key", str(key_file), "--token-file", str(token_file(tmp_path, 0o600)), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        first = []
        reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(300)
        assert first and "http://127.0.0.1:" in first[0], first
        url = "http://" + first[0].split("http://", 1)[1].split("/", 1)[0]
        assert httpx.get(url + "/healthz", timeout=30).json() == {"status": "ok"}
        assert httpx.get(url + "/v1/subjects", timeout=30).status_code == 401
        listed = httpx.get(url + "/v1/subjects", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert listed.json() == {"subjects": []}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    secret = json.loads(key_file.read_text())["secret"]
    for text in (first[0] + out, err):
        assert TOKEN not in text and secret not in text
    assert "Traceback" not in err
    assert "GET /v1/subjects 401" in err and "GET /v1/subjects 200" in err
