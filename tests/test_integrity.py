"""Tampered model folders and bundles are refused before use: one line, exit code 2, no traceback.

Export folders: every graph and external data file is hashed against manifest.json's ``files``
table; engine folders: every engine and sidecar. Bundles: a digest of config and tensors.
"""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from conftest import cli_refuses
from anonymixer.codestats import STATS_FILE
from anonymixer.digest import sha256_file
from anonymixer.errors import BundleIntegrityError, CheckpointError, EngineIntegrityError, ExportIntegrityError
from anonymixer.export.layout import GRAPHS, MANIFEST, manifest_digest, sealed
from anonymixer.export.onnx import export_onnx
from anonymixer.models.bundle import BUNDLE_VERSION, bundle_digest, load_bundle, save_bundle
from anonymixer.runtime import Protector
from anonymixer.runtime.engines import engine_filename, engine_manifest, sidecar_path
from anonymixer.runtime.ort import OrtBackend


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_bundle):
    """fp32 graphs of the tiny model, each with its weights in an external ``.data`` file."""
    folder = tmp_path_factory.mktemp("integrity") / "tiny"
    export_onnx(tiny_bundle, folder, progress=False, external_data=True)
    return folder


@pytest.fixture
def folder(tiny_export, tmp_path):
    return shutil.copytree(tiny_export, tmp_path / "tiny")


def read_manifest(folder):
    return json.loads((folder / MANIFEST).read_text())


def write_manifest(folder, data):
    """Rewrite the manifest and its digest, as someone who knows the format would: the checks below
    the manifest's own digest must hold on their own."""
    (folder / MANIFEST).write_text(json.dumps(sealed(data)))


def flip_bit(path, offset=None):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(raw))


def protect_args(folder, key_file, tmp_path, crop_dir):
    return ["protect", "--aligned", str(crop_dir), "--key", str(key_file), "--onnx", str(folder),
            "--out", str(tmp_path / "out")]


@pytest.fixture
def crop_dir(tmp_path):
    import cv2

    folder = tmp_path / "crops"
    folder.mkdir()
    cv2.imwrite(str(folder / "face.png"), np.full((256, 256, 3), 128, np.uint8))
    return folder


# --- export folders -------------------------------------------------------------------------------------

def test_an_untouched_export_folder_passes_every_check(folder, key):
    assert Protector(str(folder), key, backend="ort").info.name == "tiny"


EDITS = {  # manifest fields that change what the runtime does, each with a plausible hand edit
    "crop_template": [[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]],
    "mixer_mode": "swap", "project_rank": 1, "radius_guard": False, "layer_mask": [], "output_resolution": 32,
    "input_size": 128, "truncation_psi": 1.0}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_a_hand_edited_manifest_field_is_refused_in_one_line(folder, field, key_file, tmp_path, crop_dir, capsys):
    manifest = read_manifest(folder)
    assert field in manifest and manifest[field] != EDITS[field]
    manifest[field] = EDITS[field]
    (folder / MANIFEST).write_text(json.dumps(manifest))     # the digest left as it was
    with pytest.raises(ExportIntegrityError, match="do not match its 'digest'"):
        OrtBackend(folder)
    cli_refuses(capsys, protect_args(folder, key_file, tmp_path, crop_dir), folder / MANIFEST, "edited by hand")
    assert not (tmp_path / "out" / "face.png").exists()


def test_a_manifest_without_a_digest_is_refused(folder):
    manifest = read_manifest(folder)
    del manifest["digest"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ExportIntegrityError, match="has no 'digest'"):
        OrtBackend(folder)


def test_the_digest_covers_every_field_and_ignores_key_order_and_layout(folder):
    manifest = read_manifest(folder)
    reordered = dict(reversed(list(manifest.items())))
    assert manifest_digest(reordered) == manifest["digest"] == manifest_digest(manifest)
    for field in manifest:
        if field != "digest":
            assert manifest_digest({**manifest, field: "edited"}) != manifest["digest"], field
    (folder / MANIFEST).write_text(json.dumps(reordered))   # no indent, other order: same fields
    assert OrtBackend(folder).info.name == "tiny"


@pytest.mark.parametrize("name", ["generator.onnx", "encoder.onnx.data", "mapping.onnx.data", STATS_FILE])
def test_a_graph_external_data_or_statistics_file_with_one_flipped_bit_is_refused(folder, name, key_file, tmp_path,
                                                                                   crop_dir, capsys):
    flip_bit(folder / name)
    with pytest.raises(ExportIntegrityError) as info:
        OrtBackend(folder)
    assert str(folder / name) in str(info.value) and "sha256" in str(info.value)
    cli_refuses(capsys, protect_args(folder, key_file, tmp_path, crop_dir), folder / name,
                   "anonymixer export --model", "--force")
    assert not (tmp_path / "out" / "face.png").exists()


def test_a_missing_sha256_is_an_error_not_a_skip(folder, key_file, tmp_path, crop_dir, capsys):
    manifest = read_manifest(folder)
    del manifest["files"]["generator.onnx"]["sha256"]
    del manifest["graphs"]["generator"]["fp32"]["sha256"]
    write_manifest(folder, manifest)
    flip_bit(folder / "generator.onnx")          # what the old skip let through
    with pytest.raises(ExportIntegrityError, match="without a sha256"):
        OrtBackend(folder)
    cli_refuses(capsys, protect_args(folder, key_file, tmp_path, crop_dir), folder / "generator.onnx",
                   "without a sha256")


@pytest.mark.parametrize("damage", ["unlist the graph", "unlist its data", "drop the files table"])
def test_a_file_not_listed_in_the_manifest_is_refused(folder, damage):
    manifest = read_manifest(folder)
    if damage == "unlist the graph":
        del manifest["files"]["encoder.onnx"]
    elif damage == "unlist its data":
        del manifest["files"]["encoder.onnx.data"]
    else:
        del manifest["files"]
    write_manifest(folder, manifest)
    with pytest.raises(ExportIntegrityError) as info:
        OrtBackend(folder)
    assert "not listed" in str(info.value)
    assert damage == "drop the files table" or "encoder.onnx" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_manifest_naming_a_file_outside_the_folder_is_refused(folder, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copyfile(folder / "mixer.onnx", outside)
    manifest = read_manifest(folder)
    manifest["graphs"]["mixer"]["fp32"]["file"] = "../elsewhere.onnx"
    write_manifest(folder, manifest)
    with pytest.raises(ExportIntegrityError, match="not a file of"):
        OrtBackend(folder)


def keyless_mixer(info):
    """A mixer graph with the real one's interface that ignores the key: ``w_prot = w_real``."""
    latent = [info.n_latent, info.style_dim]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w_real"], ["w_prot"])], "mixer",
        [helper.make_tensor_value_info("w_real", TensorProto.FLOAT, ["batch", *latent]),
         helper.make_tensor_value_info("key_matrix", TensorProto.FLOAT, [info.style_dim, info.style_dim]),
         helper.make_tensor_value_info("key_offset", TensorProto.FLOAT, latent)],
        [helper.make_tensor_value_info("w_prot", TensorProto.FLOAT, ["batch", *latent])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_mixer_replaced_by_one_that_ignores_the_key_is_caught_by_its_hash(folder, key_file, tmp_path, crop_dir,
                                                                            capsys):
    info = OrtBackend(folder).info
    onnx.save_model(keyless_mixer(info), str(folder / "mixer.onnx"))
    (folder / "mixer.onnx.data").unlink(missing_ok=True)
    # The attack is real: the swapped graph runs and gives the same output under two different keys...
    session = ort.InferenceSession(str(folder / "mixer.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    w_real = rng.standard_normal((2, info.n_latent, info.style_dim)).astype(np.float32)
    keys = [{"key_matrix": rng.standard_normal((info.style_dim, info.style_dim)).astype(np.float32),
             "key_offset": rng.standard_normal((info.n_latent, info.style_dim)).astype(np.float32)}
            for _ in range(2)]
    outputs = [session.run(None, {"w_real": w_real, **feeds})[0] for feeds in keys]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    # ... and the runtime refuses it before it can run.
    with pytest.raises(ExportIntegrityError, match="does not match its sha256"):
        OrtBackend(folder)
    cli_refuses(capsys, protect_args(folder, key_file, tmp_path, crop_dir), folder / "mixer.onnx")
    assert not (tmp_path / "out" / "face.png").exists()


def test_calibrate_refuses_a_tampered_folder_instead_of_re_hashing_it(folder, capsys):
    flip_bit(folder / "generator.onnx.data")
    before = read_manifest(folder)["files"]
    cli_refuses(capsys, ["calibrate", "--onnx", str(folder), "--calib-synthetic", "2"],
                   folder / "generator.onnx.data")
    assert read_manifest(folder)["files"] == before


# --- engine folders (no TensorRT needed: the checks run before any GPU work) ----------------------------

@pytest.fixture
def engine_folder(tiny_export, tmp_path):
    """An engine folder as ``anonymixer build`` writes it, with stand-in engine bytes."""
    out = tmp_path / "engines"
    out.mkdir()
    written = []
    for stage in GRAPHS:
        engine = out / engine_filename(stage, "fp16")
        engine.write_bytes(f"serialized {stage} engine".encode() * 20)
        sidecar_path(engine).write_text(json.dumps({"format": "anonymixer-engine", "version": 1}))
        written.append(engine)
    shutil.copyfile(tiny_export / STATS_FILE, out / STATS_FILE)
    write_manifest(out, engine_manifest(read_manifest(tiny_export), out, written, tiny_export, (1, 1, 4)))
    return out


def open_engines(folder):
    from anonymixer.runtime.trt import TrtBackend

    return TrtBackend(folder)


@pytest.mark.parametrize("name", ["encoder.fp16.engine", "mixer.fp16.engine.json", STATS_FILE])
def test_an_engine_or_sidecar_with_one_flipped_bit_is_refused_with_the_build_command(engine_folder, name):
    flip_bit(engine_folder / name)
    with pytest.raises(EngineIntegrityError) as info:
        open_engines(engine_folder)
    message = str(info.value)
    assert str(engine_folder / name) in message and "\n" not in message
    assert "anonymixer build --onnx" in message and "--batch 1,1,4" in message


def test_a_hand_edited_engine_folder_manifest_is_refused(engine_folder):
    manifest = read_manifest(engine_folder)
    manifest["crop_template"] = EDITS["crop_template"]
    (engine_folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(EngineIntegrityError, match="edited by hand") as info:
        open_engines(engine_folder)
    assert "anonymixer build --onnx" in str(info.value)


def test_an_engine_not_listed_in_the_manifest_is_refused(engine_folder):
    manifest = read_manifest(engine_folder)
    del manifest["files"]["generator.fp16.engine"]
    write_manifest(engine_folder, manifest)
    with pytest.raises(EngineIntegrityError, match="not listed"):
        open_engines(engine_folder)


def test_an_engine_folder_with_a_plain_export_manifest_is_refused(engine_folder, tiny_export):
    shutil.copyfile(tiny_export / MANIFEST, engine_folder / MANIFEST)   # what builds before this check wrote
    with pytest.raises(EngineIntegrityError, match="not an engine folder manifest"):
        open_engines(engine_folder)


def test_a_second_build_of_another_precision_keeps_the_first_ones_entries(engine_folder, tiny_export):
    engine = engine_folder / engine_filename("encoder", "int8")
    engine.write_bytes(b"int8 engine")
    sidecar_path(engine).write_text("{}")
    manifest = engine_manifest(read_manifest(tiny_export), engine_folder, [engine], tiny_export, (1, 1, 4))
    assert {"encoder.fp16.engine", "encoder.int8.engine", "encoder.int8.engine.json"} <= set(manifest["files"])
    assert manifest["files"]["encoder.int8.engine"]["sha256"] == sha256_file(engine)


# --- bundles --------------------------------------------------------------------------------------------

@pytest.fixture
def bundle_file(tiny_bundle, tmp_path):
    path = tmp_path / "tiny.pt"
    save_bundle(tiny_bundle, path)
    return path


def test_the_bundle_digest_is_deterministic_and_sees_one_ulp(tiny_bundle, bundle_file):
    loaded = load_bundle(bundle_file)
    assert bundle_digest(loaded) == bundle_digest(tiny_bundle)
    assert torch.load(bundle_file, weights_only=True)["version"] == BUNDLE_VERSION
    name = sorted(loaded.generator)[0]
    loaded.generator[name] = torch.nextafter(loaded.generator[name], torch.full_like(loaded.generator[name], 1e9))
    assert bundle_digest(loaded) != bundle_digest(tiny_bundle)


def test_a_bundle_with_one_flipped_bit_in_a_weight_is_refused(tiny_bundle, bundle_file, key_file, tmp_path,
                                                              crop_dir, capsys):
    weight = tiny_bundle.generator["synthesis.conv1.conv.weight"].contiguous().numpy().tobytes()
    offset = bundle_file.read_bytes().find(weight[:64])
    assert offset > 0
    flip_bit(bundle_file, offset + 17)
    with pytest.raises(BundleIntegrityError) as info:
        load_bundle(bundle_file)
    assert str(bundle_file) in str(info.value) and "\n" not in str(info.value)
    cli_refuses(capsys, ["protect", "--aligned", str(crop_dir), "--key", str(key_file), "--model", str(bundle_file),
                         "--out", str(tmp_path / "out")], bundle_file, "digest", "anonymixer import")
    assert not (tmp_path / "out" / "face.png").exists()


@pytest.mark.parametrize("damage,needle", [("no digest", "no digest"), ("version 1", "version 1"),
                                           ("config", "do not match the bundle's digest")])
def test_a_bundle_without_a_valid_digest_is_refused(bundle_file, damage, needle):
    payload = torch.load(bundle_file, weights_only=True)
    if damage == "no digest":
        del payload["digest"]
    elif damage == "version 1":
        payload["version"] = 1
    else:
        payload["config"]["layer_mask"] = []    # a mixer that would take nothing from the key
    torch.save(payload, bundle_file)
    with pytest.raises(CheckpointError, match=needle) as info:
        load_bundle(bundle_file)
    assert str(bundle_file) in str(info.value) and "\n" not in str(info.value)
