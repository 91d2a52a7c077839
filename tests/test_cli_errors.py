"""Inputs that used to end in a traceback: each is now one line on stderr and exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anonymixer.atomic import prepare_folder, replacing, write_json
from conftest import cli_refuses
from anonymixer.errors import KeyFileError, OutputError, ResolutionError
from anonymixer.keys import MAX_KEY_FILE_BYTES, load_key
from anonymixer.models.bundle import ModelBundle, random_bundle, save_bundle
from anonymixer.models.configs import CONFIGS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def crops(tmp_path):
    """A folder with one file to protect: the commands below must fail before reading it."""
    folder = tmp_path / "crops"
    folder.mkdir()
    (folder / "face.png").write_bytes(b"unused: the model or key is refused first")
    return folder


# --- --out names a file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["demo", "--model", "random:tiny"],
    ["evaluate", "--data", ".", "--model", "random:tiny"],
    ["export", "--model", "random:tiny"],
    ["bench", "--model", "random:tiny"],
])
def test_out_that_is_a_file_is_one_line_naming_it(tmp_path, capsys, command):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    cli_refuses(capsys, [*command, "--out", str(out)], out, "in the way")
    assert out.read_text() == "not a folder"


# --- --resolution ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("resolution", ["0", "7", "-1", "128"])
def test_a_resolution_that_is_not_a_power_of_two_within_the_model_is_one_line(tmp_path, capsys, key_file, crops,
                                                                              resolution):
    cli_refuses(capsys, ["protect", "--aligned", str(crops), "--key", str(key_file), "--model", "random:tiny",
                            "--resolution", resolution, "--out", str(tmp_path / "out")],
                   f"output resolution {resolution} is not a power of two", "4, 8, 16, 32, 64")


def test_export_refuses_a_bad_resolution_before_writing_anything(tmp_path, capsys):
    cli_refuses(capsys, ["export", "--model", "random:tiny", "--resolution", "48", "--out", str(tmp_path / "x")],
                   "output resolution 48")
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_the_api_raises_a_typed_error_that_is_also_a_value_error(tiny_bundle):
    with pytest.raises(ResolutionError):
        tiny_bundle.build_generator(output_resolution=7)
    with pytest.raises(ValueError):      # what callers of the generator caught before
        tiny_bundle.build_generator(output_resolution=128)
    assert tiny_bundle.build_generator(output_resolution=16).synthesis.output_resolution == 16


# --- key files that are not small regular files ---------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_key_path_to_a_device_is_refused_without_reading_it(capsys, tmp_path):
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key("/dev/zero")
    cli_refuses(capsys, ["protect", "--aligned", str(tmp_path), "--key", "/dev/zero", "--out", str(tmp_path)],
                   "/dev/zero", "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_key_path_to_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    # In a subprocess: a blocking open would hang this test run, not fail it.
    code = f"from anonymixer.keys import load_key\nload_key({str(fifo)!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0 and "KeyFileError" in result.stderr and "not a regular file" in result.stderr


def test_a_huge_key_file_is_refused_after_a_bounded_read(tmp_path, monkeypatch, capsys):
    path = tmp_path / "huge.key"
    with open(path, "wb") as f:
        f.truncate(8 * 2**30)             # 8 GiB, sparse: a whole read would exhaust memory
    reads = []
    real_read = os.fdopen

    def spying_fdopen(*args, **kwargs):
        handle = real_read(*args, **kwargs)
        original = handle.read

        def read(n=-1):
            reads.append(n)
            return original(n)
        handle.read = read
        return handle

    monkeypatch.setattr(os, "fdopen", spying_fdopen)
    with pytest.raises(KeyFileError, match=f"larger than {MAX_KEY_FILE_BYTES} bytes"):
        load_key(path)
    assert reads and all(0 < n <= MAX_KEY_FILE_BYTES + 1 for n in reads)
    monkeypatch.undo()
    cli_refuses(capsys, ["fingerprint", str(path)], path, "larger than")


# --- bundles with a bad config or mismatched weights ----------------------------------------------------

def test_a_bundle_whose_weights_do_not_fit_its_config_is_one_line_naming_it(tmp_path, capsys, key_file, crops,
                                                                           tiny_bundle):
    path = tmp_path / "mismatch.pt"
    wrong = ModelBundle(config=CONFIGS["ffhq256"](), encoder=tiny_bundle.encoder, generator=tiny_bundle.generator)
    save_bundle(wrong, path)              # an honest digest over a wrong pairing
    err = cli_refuses(capsys, ["protect", "--aligned", str(crops), "--key", str(key_file), "--model", str(path),
                                  "--out", str(tmp_path / "out")], path, "do not match the config", "anonymixer import")
    assert "missing" in err or "another shape" in err


def test_a_bundle_with_a_garbled_config_is_one_line_naming_it(tmp_path, capsys, key_file, crops):
    path = tmp_path / "garbled.pt"
    save_bundle(random_bundle("tiny"), path)
    payload = torch.load(path, weights_only=True)
    payload["config"] = {"name": "tiny", "generator": {"size": "large"}}
    torch.save(payload, path)
    cli_refuses(capsys, ["protect", "--aligned", str(crops), "--key", str(key_file), "--model", str(path),
                            "--out", str(tmp_path / "out")], path, "bad model config")


# --- the atomic write helper (reports, manifests, sidecars, bundles) ----------------------------------

def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "eval.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with replacing(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


def test_a_bundle_write_that_fails_leaves_the_previous_bundle(tmp_path, tiny_bundle, monkeypatch):
    path = tmp_path / "model.pt"
    save_bundle(tiny_bundle, path)
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match="No space left on device") as info:
        save_bundle(tiny_bundle, path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_json_reports_are_written_whole_and_named_on_error(tmp_path):
    write_json(tmp_path / "bench.json", {"a": 1})
    assert (tmp_path / "bench.json").read_text() == '{\n "a": 1\n}\n'
    with pytest.raises(OutputError, match="folder"):
        write_json(tmp_path, {"a": 1})
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="in the way"):
        prepare_folder(tmp_path / "file")
