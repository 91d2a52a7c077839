"""Signed model folders, bundles and detector files (``anonymixer sign``, ``--trusted-key``).

The manifest's digest catches a hand edit; an attacker who rewrites a field *and* the digest is
caught only by a signature made with a key the deployment trusts.
"""

import json
import shutil
import stat

import numpy as np
import pytest

from conftest import cli_refuses
from anonymixer import signing
from anonymixer.cli import main
from anonymixer.errors import SignatureError
from anonymixer.export.layout import MANIFEST, sealed
from anonymixer.export.onnx import export_onnx
from anonymixer.models.bundle import load_bundle, save_bundle
from anonymixer.runtime.ort import OrtBackend

CROP_TEMPLATE = [[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]]
SIGN_EXTRA = "signatures need the sign extra: pip install 'anonymixer[sign]' (cryptography)"


def needs_cryptography():
    pytest.importorskip("cryptography", reason=SIGN_EXTRA)


@pytest.fixture(autouse=True)
def no_trusted_key_left_behind(monkeypatch):
    monkeypatch.delenv(signing.TRUSTED_KEY_ENV, raising=False)
    yield
    signing.forget()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_bundle):
    folder = tmp_path_factory.mktemp("signing") / "tiny"
    export_onnx(tiny_bundle, folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    needs_cryptography()
    path = tmp_path_factory.mktemp("keys") / "signer.key"
    signing.new_signing_key(path)
    return path


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    needs_cryptography()
    path = tmp_path_factory.mktemp("keys") / "stranger.key"
    signing.new_signing_key(path)
    return path


def pub(key):
    return key.with_name(key.name + ".pub")


@pytest.fixture
def folder(tiny_export, tmp_path):
    return shutil.copytree(tiny_export, tmp_path / "tiny")


@pytest.fixture
def signed(folder, signer, capsys):
    assert main(["sign", str(folder), "--signing-key", str(signer)]) == 0
    capsys.readouterr()
    return folder


@pytest.fixture
def crops(tmp_path):
    import cv2

    path = tmp_path / "crops"
    path.mkdir()
    cv2.imwrite(str(path / "face.png"), np.full((256, 256, 3), 128, np.uint8))
    return path


def protect(folder, key_file, crops, out, *extra):
    return ["protect", "--aligned", str(crops), "--key", str(key_file), "--onnx", str(folder), "--out", str(out),
            *extra]


def test_new_key_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path, capsys):
    needs_cryptography()
    path = tmp_path / "s.key"
    assert main(["sign", "--new-key", str(path)]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in path.read_bytes() and b"PUBLIC KEY" in pub(path).read_bytes()
    assert path.read_text() not in out and "signer: " in out
    before = path.read_bytes()
    cli_refuses(capsys, ["sign", "--new-key", str(path)], path, "never overwritten")
    assert path.read_bytes() == before


def test_a_signed_folder_runs_under_its_trusted_key(signed, signer, key_file, crops, tmp_path, capsys):
    assert (signed / (MANIFEST + ".sig")).is_file()
    assert main(protect(signed, key_file, crops, tmp_path / "out", "--trusted-key", str(pub(signer)))) == 0
    assert (tmp_path / "out" / "face.png").is_file()


def test_an_unsigned_folder_is_refused_under_a_trusted_key(folder, signer, key_file, crops, tmp_path, capsys):
    cli_refuses(capsys, protect(folder, key_file, crops, tmp_path / "out", "--trusted-key", str(pub(signer))),
                folder, "not signed", "anonymixer sign")
    assert not (tmp_path / "out" / "face.png").exists()


def test_a_field_rewritten_with_its_digest_passes_the_digest_but_not_the_signature(signed, signer, key_file, crops,
                                                                                   tmp_path, capsys):
    manifest = json.loads((signed / MANIFEST).read_text())
    manifest["crop_template"] = CROP_TEMPLATE
    (signed / MANIFEST).write_text(json.dumps(sealed(manifest)))   # an attacker who knows the format
    assert OrtBackend(signed).info.crop_template is not None      # what the digest alone cannot see
    cli_refuses(capsys, protect(signed, key_file, crops, tmp_path / "out", "--trusted-key", str(pub(signer))),
                signed, "altered since it was signed")
    assert not (tmp_path / "out" / "face.png").exists()


def test_a_folder_signed_by_another_key_is_refused(folder, stranger, signer, key_file, crops, tmp_path, capsys):
    signing.sign(folder, signing.load_signing_key(stranger))
    cli_refuses(capsys, protect(folder, key_file, crops, tmp_path / "out", "--trusted-key", str(pub(signer))),
                "signed by key", "not by the trusted key")


def test_a_forged_signature_is_refused(signed, signer):
    path = signed / (MANIFEST + ".sig")
    record = json.loads(path.read_text())
    record["signature"] = record["signature"][:10] + ("A" if record["signature"][10] != "A" else "B") \
        + record["signature"][11:]
    path.write_text(json.dumps(record))
    signing.trust(pub(signer))
    with pytest.raises(SignatureError, match="does not check with the trusted key"):
        OrtBackend(signed)


def test_the_environment_variable_sets_the_trusted_key(folder, signer, key_file, crops, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(signing.TRUSTED_KEY_ENV, str(pub(signer)))
    cli_refuses(capsys, protect(folder, key_file, crops, tmp_path / "out"), "not signed")


def test_a_private_key_given_as_the_trusted_key_is_refused(signed, signer, key_file, crops, tmp_path, capsys):
    cli_refuses(capsys, protect(signed, key_file, crops, tmp_path / "out", "--trusted-key", str(signer)),
                "private signing key", ".pub")


def test_rewriting_a_manifest_removes_the_signature_it_breaks(signed, signer, capsys):
    assert main(["calibrate", "--onnx", str(signed), "--calib-synthetic", "2",
                 "--trusted-key", str(pub(signer))]) == 0
    capsys.readouterr()
    assert not (signed / (MANIFEST + ".sig")).exists()
    signing.trust(pub(signer))
    with pytest.raises(SignatureError, match="not signed"):
        OrtBackend(signed)


def test_signing_refuses_a_folder_whose_files_do_not_match(folder, signer, capsys):
    path = folder / "mixer.onnx"
    path.write_bytes(path.read_bytes()[:-3])
    cli_refuses(capsys, ["sign", str(folder), "--signing-key", str(signer)], path, "sha256")
    assert not (folder / (MANIFEST + ".sig")).exists()


@pytest.mark.parametrize("command", [
    ["calibrate", "--onnx", "{folder}", "--calib-synthetic", "2"],
    ["build", "--onnx", "{folder}", "--dry-run"],
    ["demo", "--onnx", "{folder}", "--out", "{tmp}/demo"],
    ["rekey", "{crops}", "--key", "{key}", "--revoked", "0000-0000-0000-0000", "--onnx", "{folder}",
     "--out", "{tmp}/rekeyed"],
    ["evaluate", "--data", "{tmp}", "--onnx", "{folder}", "--out", "{tmp}/eval"],
], ids=lambda c: c[0])
def test_every_command_that_loads_a_model_folder_refuses_an_unsigned_one(command, folder, signer, key_file, crops,
                                                                          tmp_path, capsys):
    names = {"folder": folder, "tmp": tmp_path, "crops": crops, "key": key_file}
    args = [part.format(**names) for part in command] + ["--trusted-key", str(pub(signer))]
    cli_refuses(capsys, args, folder, "not signed")


def test_bundles_are_signed_as_files(tiny_bundle, signer, stranger, tmp_path, capsys):
    bundle = tmp_path / "tiny.pt"
    save_bundle(tiny_bundle, bundle)
    signing.trust(pub(signer))
    with pytest.raises(SignatureError, match="not signed"):
        load_bundle(bundle)
    signing.sign(bundle, signing.load_signing_key(signer))
    assert load_bundle(bundle).config.name == "tiny"
    other = tmp_path / "other.pt"                 # the signed bundle and its signature, one byte added
    other.write_bytes(bundle.read_bytes() + b"\0")
    shutil.copyfile(bundle.with_name("tiny.pt.sig"), other.with_name("other.pt.sig"))
    with pytest.raises(SignatureError, match="altered since it was signed"):
        load_bundle(other)
    cli_refuses(capsys, ["export", "--model", str(bundle), "--out", str(tmp_path / "x"),
                         "--trusted-key", str(pub(stranger))], "signed by key")


def test_a_detector_file_is_signed_too(signer, tmp_path, capsys):
    from anonymixer.face.detect import find_yunet_model, open_detector

    detector = tmp_path / "yunet.onnx"
    shutil.copyfile(find_yunet_model(), detector)
    signing.trust(pub(signer))
    with pytest.raises(SignatureError, match="not signed"):
        open_detector(str(detector))
    signing.sign(detector, signing.load_signing_key(signer))
    assert open_detector(str(detector)).name == "yunet"


@pytest.mark.parametrize("command", ["protect", "rekey", "demo", "evaluate", "bench", "build", "calibrate", "export"])
def test_every_command_that_loads_a_model_takes_a_trusted_key(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--trusted-key PUB" in capsys.readouterr().out
