"""Issue 21, the model side: tracebacks and unclear errors of rekey, evaluate, calibrate, --model,
--detector and garbled model files become one line each; rekey never overwrites an input and
can resume after an interruption."""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest

from conftest import cli_refuses
from anonymixer.codestats import STATS_FILE
from anonymixer.digest import sha256_file
from anonymixer.export.layout import MANIFEST, write_manifest
from anonymixer.export.onnx import export_onnx


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_bundle):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    export_onnx(tiny_bundle, folder, progress=False)
    return folder


@pytest.fixture
def folder(tiny_export, tmp_path):
    return shutil.copytree(tiny_export, tmp_path / "tiny")


@pytest.fixture
def crops(tmp_path):
    import cv2

    path = tmp_path / "crops"
    path.mkdir()
    cv2.imwrite(str(path / "face.png"), np.full((256, 256, 3), 128, np.uint8))
    return path


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def zip_of(name, data):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


GARBLED_STATS = {
    "empty": b"",
    "zip header only": b"PK\x03\x04" + bytes(40),
    "damaged member": zip_of("mean.npy", b"\x93NUMPY garbage"),
    "complex arrays": npz(mean=np.zeros(64), eigenvalues=np.ones(64), eigenvectors=np.eye(64, dtype=complex)),
    "strings": npz(mean=np.array(["a"] * 64), eigenvalues=np.ones(64), eigenvectors=np.eye(64)),
}


@pytest.mark.parametrize("damage", sorted(GARBLED_STATS))
def test_garbled_code_statistics_with_a_rehashed_manifest_are_one_line(folder, damage, key_file, crops, tmp_path,
                                                                       capsys):
    stats = folder / STATS_FILE
    stats.write_bytes(GARBLED_STATS[damage])
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][STATS_FILE] = {"sha256": sha256_file(stats), "bytes": stats.stat().st_size}
    write_manifest(folder, manifest)      # the hash and the digest agree with the garbage
    cli_refuses(capsys, ["protect", "--aligned", str(crops), "--key", str(key_file), "--onnx", str(folder),
                         "--out", str(tmp_path / "out")], stats, "code statistics", "anonymixer export")
