"""`anonymixer rekey`: originals protected again under a new key, a new tree and an audit manifest."""

import json

import cv2
import pytest
from facekit import needs_yunet, originals_folder, photo, write_video

from anonymixer.cli import main
from anonymixer.digest import sha256_file
from anonymixer.keys import load_key

pytestmark = [needs_yunet, pytest.mark.usefixtures("reuse_tiny_model")]


@pytest.fixture
def originals(tmp_path):
    folder = originals_folder(tmp_path / "originals")
    (folder / "bad.jpg").write_text("not a photo")
    frame = cv2.resize(photo("astronaut"), (192, 144))
    write_video(folder / "clip.avi", [frame, frame, frame], fps=10)
    return folder


def rekey(originals, keys, out, *extra):
    old, new = keys
    return main(["rekey", str(originals), "--revoked", str(old), "--key", str(new), "--model", "random:tiny",
                 "--out", str(out), *map(str, extra)])


def test_rekey_writes_a_new_tree_and_a_manifest_of_digests_and_fingerprints(tmp_path, originals, keys, capsys):
    out = tmp_path / "new"
    assert rekey(originals, keys, out) == 1  # bad.jpg
    data = json.loads((out / "rekey-manifest.json").read_text())
    assert data["format"] == "anonymixer-rekey-manifest" and data["version"] == 1
    assert data["revoked_key"] == load_key(keys[0]).fingerprint
    assert data["new_key"] == load_key(keys[1]).fingerprint
    assert (data["inputs"], data["protected"], data["failed"]) == (4, 3, 1)
    entries = {entry["input"]: entry for entry in data["files"]}
    for name in ("a.png", "2025/b.png", "clip.avi"):
        entry = entries[str(originals / name)]
        assert entry["status"] == "protected"
        assert entry["input_sha256"] == sha256_file(originals / name)
        assert entry["output"] == str(out / name) and entry["output_sha256"] == sha256_file(out / name)
    bad = entries[str(originals / "bad.jpg")]
    assert bad["status"] == "failed" and bad["output"] is None and "not a readable image" in bad["problems"][0]
    printed = capsys.readouterr().out
    assert f"revoked {data['revoked_key']} -> new {data['new_key']}" in printed
    assert "3 protected, 1 failed, of 4 originals" in printed


def test_the_manifest_holds_fingerprints_never_secrets(tmp_path, originals, keys):
    out = tmp_path / "new"
    rekey(originals, keys, out)
    text = (out / "rekey-manifest.json").read_text()
    for key_file in keys:
        secret = json.loads(key_file.read_text())["secret"]
        assert secret not in text and secret.upper() not in text
        assert load_key(key_file).fingerprint in text


def test_the_new_outputs_differ_from_the_outputs_under_the_revoked_key(tmp_path, originals, keys):
    main(["protect", str(originals / "a.png"), "--key", str(keys[0]), "--model", "random:tiny",
          "--out", str(tmp_path / "old")])
    rekey(originals, keys, tmp_path / "new")
    old, new = cv2.imread(str(tmp_path / "old" / "a.png")), cv2.imread(str(tmp_path / "new" / "a.png"))
    assert old.shape == new.shape and (old != new).any()


def test_rekey_refuses_an_output_folder_that_is_not_empty(tmp_path, originals, keys, capsys):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "old-output.png").write_bytes(b"x")
    assert rekey(originals, keys, tmp_path / "new") == 2
    assert "new output tree" in capsys.readouterr().err


def test_rekey_refuses_the_revoked_key_as_the_new_key(tmp_path, originals, keys, capsys):
    old, _ = keys
    assert rekey(originals, (old, old), tmp_path / "new") == 2
    assert "is the revoked key" in capsys.readouterr().err


def test_the_revoked_key_can_be_given_by_its_fingerprint(tmp_path, originals, keys):
    fingerprint = load_key(keys[0]).fingerprint
    keys[0].unlink()  # the revoked key file may be gone
    rekey(originals, (fingerprint, keys[1]), tmp_path / "new")
    data = json.loads((tmp_path / "new" / "rekey-manifest.json").read_text())
    assert data["revoked_key"] == fingerprint


def test_a_ray_address_that_is_an_input_is_refused_with_a_hint(tmp_path, originals, keys, capsys):
    code = main(["protect", "--key", str(keys[1]), "--out", str(tmp_path / "o"), "--ray", str(originals),
                 str(originals / "a.png")])
    assert code == 2
    assert "put --ray after the inputs" in capsys.readouterr().err


@pytest.mark.ray
def test_rekey_on_ray_writes_the_same_outputs_and_manifest_entries(tmp_path, originals, keys):
    ray = pytest.importorskip("ray", reason="pip install 'anonymixer[ray]'")
    import torch
    from test_cluster import start_ray

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a 1-CPU actor
    try:
        assert rekey(originals, keys, tmp_path / "single") == 1
    finally:
        torch.set_num_threads(threads)
    start_ray()
    try:
        assert rekey(originals, keys, tmp_path / "ray", "--ray", "--ray-actors", 2) == 1
    finally:
        ray.shutdown()
    single = json.loads((tmp_path / "single" / "rekey-manifest.json").read_text())
    on_ray = json.loads((tmp_path / "ray" / "rekey-manifest.json").read_text())
    for a, b in zip(single["files"], on_ray["files"], strict=True):
        assert a["input_sha256"] == b["input_sha256"] and a["status"] == b["status"]
        if a["output"] and a["output"].endswith(".png"):
            assert a["output_sha256"] == b["output_sha256"]
