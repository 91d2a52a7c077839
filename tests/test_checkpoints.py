"""Import of official checkpoints: e4e/pSp, rosinality StyleGAN2 and TreB1eN ArcFace files.

The official files are built here from seeded tiny models, renamed into the official key names by
this file's own code (not the importer's), and wrapped in the official top-level layouts.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pathlib

import pytest
import torch

from anonymixer.cli import main
from anonymixer.errors import CheckpointError
from anonymixer.models.arcface import ArcFace, make_arcface
from anonymixer.digest import sha256_file
from anonymixer.models.bundle import load_bundle, resolve_spec, save_bundle
from anonymixer.models.checkpoints import (import_arcface, import_bundle, import_e4e, import_stylegan2,
                                           infer_arcface_config, infer_encoder_config,
                                           infer_generator_config)
from anonymixer.models.configs import ArcFaceConfig, ffhq256, ffhq1024, tiny, tiny_arcface
from anonymixer.models.encoder import Encoder, make_encoder
from anonymixer.models.stylegan2 import Generator, make_generator

TINY = tiny()


# --- official layouts, written from the reference repositories' names ----------------------------

def g_ema_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our Generator state -> rosinality g_ema keys (mapping.style.* -> style.*, synthesis.K -> K)."""
    g_ema = {}
    for key, value in state.items():
        if key == "w_avg":
            continue
        head, _, rest = key.partition(".")
        assert head in ("mapping", "synthesis"), key
        g_ema[rest] = value.clone()
    return g_ema


def encoder_keys_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our Encoder state -> e4e/pSp ``encoder.*`` keys (latent_avg lives at the top level there)."""
    return {f"encoder.{k}": v.clone() for k, v in state.items() if k != "latent_avg"}


def e4e_checkpoint(encoder: Encoder, generator: Generator, encoder_type: str = "Encoder4Editing",
                   **opts) -> dict:
    state = encoder_keys_of(encoder.state_dict())
    state.update({f"decoder.{k}": v for k, v in g_ema_of(generator.state_dict()).items()})
    return {
        "state_dict": state,
        "latent_avg": encoder.latent_avg.clone(),
        "opts": {"encoder_type": encoder_type, "stylegan_size": generator.cfg.size, "input_nc": 3,
                 "start_from_latent_avg": True, "checkpoint_path": None, **opts},
    }


def rosinality_checkpoint(generator: Generator, latent_avg: bool = True) -> dict:
    g_ema = g_ema_of(generator.state_dict())
    ckpt = {
        "g": {k: v + 1 for k, v in g_ema.items()},  # training weights differ from the EMA ones
        "d": {"convs.0.0.weight": torch.zeros(8, 3, 1, 1)},
        "g_ema": g_ema,
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0, 1]}]},
        "d_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0]}]},
        "args": argparse.Namespace(size=generator.cfg.size, latent=generator.cfg.style_dim,
                                   n_mlp=generator.cfg.n_mlp, channel_multiplier=1, iter=800000),
    }
    if latent_avg:
        ckpt["latent_avg"] = generator.w_avg.clone()
    return ckpt


@pytest.fixture(scope="module")
def generator() -> Generator:
    return make_generator(TINY.generator, seed=3)


@pytest.fixture(scope="module")
def encoder(generator) -> Encoder:
    return make_encoder(TINY.encoder, seed=4, latent_avg=generator.w_avg)


@pytest.fixture(scope="module")
def arcface() -> ArcFace:
    return make_arcface(tiny_arcface(), seed=5)


@pytest.fixture
def e4e_file(tmp_path, encoder, generator):
    path = tmp_path / "e4e_ffhq_encode.pt"
    torch.save(e4e_checkpoint(encoder, generator), path)
    return path


@pytest.fixture
def stylegan2_file(tmp_path, generator):
    path = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save(rosinality_checkpoint(generator), path)
    return path


@pytest.fixture
def arcface_file(tmp_path, arcface):
    path = tmp_path / "model_ir_se50.pth"
    torch.save(arcface.state_dict(), path)
    return path


def faces(side: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def codes(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, TINY.n_latent, TINY.generator.style_dim, generator=torch.Generator().manual_seed(seed))


def assert_same_state(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def assert_one_line_error(excinfo, *words: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return message


# --- the official names these helpers produce are rosinality's and e4e's --------------------------

def test_test_layouts_use_the_official_key_names(encoder, generator):
    ckpt = e4e_checkpoint(encoder, generator)
    keys = set(ckpt["state_dict"])
    for key in ("decoder.style.1.weight", "decoder.input.input", "decoder.conv1.conv.weight",
                "decoder.noises.noise_0", "decoder.convs.0.conv.blur.kernel",
                "decoder.to_rgbs.0.upsample.kernel", "decoder.to_rgb1.bias",
                "encoder.input_layer.0.weight", "encoder.body.0.res_layer.5.fc1.weight",
                "encoder.styles.0.convs.0.weight", "encoder.styles.9.linear.weight",
                "encoder.latlayer1.weight"):
        assert key in keys, key
    assert not any("w_avg" in k or "latent_avg" in k for k in keys)


# --- e4e / pSp ------------------------------------------------------------------------------------

def test_e4e_import_gives_identical_tensors(e4e_file, encoder, generator):
    bundle = import_e4e(e4e_file)
    assert_same_state(bundle.encoder, encoder.state_dict())
    assert_same_state(bundle.generator, generator.state_dict())


def test_e4e_import_gives_identical_network_outputs(e4e_file, encoder, generator):
    bundle = import_e4e(e4e_file)
    with torch.no_grad():
        x = faces(TINY.encoder.input_size)
        assert torch.equal(bundle.build_encoder()(x), encoder(x))
        assert torch.equal(bundle.build_generator()(codes()), generator(codes()))


def test_e4e_config_is_inferred_from_the_shapes(e4e_file):
    assert import_e4e(e4e_file).config == TINY


def test_e4e_source_records_kind_file_name_and_sha256(e4e_file):
    assert import_e4e(e4e_file).sources == [
        {"kind": "e4e", "file": "e4e_ffhq_encode.pt",
         "sha256": hashlib.sha256(e4e_file.read_bytes()).hexdigest()}]


def test_imported_bundle_saves_loads_and_resolves_as_a_model_spec(tmp_path, e4e_file, encoder):
    path = tmp_path / "tiny.bundle"
    save_bundle(import_e4e(e4e_file), path)
    bundle = resolve_spec(str(path))
    assert bundle.config == TINY and not bundle.is_random
    assert bundle.sources[0]["file"] == "e4e_ffhq_encode.pt"
    assert_same_state(load_bundle(path).encoder, encoder.state_dict())
    with torch.no_grad():
        x = faces(TINY.encoder.input_size)
        assert torch.equal(bundle.build_encoder()(x), encoder(x))


def test_psp_mode_is_taken_from_the_encoder_type(tmp_path, generator):
    psp = make_encoder(dataclasses.replace(TINY.encoder, mode="psp"), seed=6, latent_avg=generator.w_avg)
    path = tmp_path / "psp_ffhq_encode.pt"
    torch.save(e4e_checkpoint(psp, generator, encoder_type="GradualStyleEncoder", output_size=64), path)
    bundle = import_e4e(path)
    assert bundle.config.encoder.mode == "psp"
    assert bundle.sources[0]["kind"] == "psp"
    with torch.no_grad():
        x = faces(TINY.encoder.input_size)
        assert torch.equal(bundle.build_encoder()(x), psp(x))


def test_psp_flag_decides_the_mode_when_the_file_has_no_opts(tmp_path, encoder, generator):
    ckpt = e4e_checkpoint(encoder, generator)
    del ckpt["opts"]
    path = tmp_path / "no_opts.pt"
    torch.save(ckpt, path)
    assert import_bundle(psp=path).config.encoder.mode == "psp"
    assert import_bundle(e4e=path).config.encoder.mode == "e4e"


def test_encoder_type_in_the_file_wins_over_the_flag(e4e_file):
    assert import_bundle(psp=e4e_file).config.encoder.mode == "e4e"


def test_psp_for_sketches_is_refused(tmp_path, encoder, generator):
    ckpt = e4e_checkpoint(encoder, generator, encoder_type="GradualStyleEncoder", input_nc=1)
    stem = ckpt["state_dict"]["encoder.input_layer.0.weight"]
    ckpt["state_dict"]["encoder.input_layer.0.weight"] = stem[:, :1].clone()
    path = tmp_path / "psp_celebs_sketch_to_face.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "1-channel", "sketches")


def test_unsupported_encoder_type_is_refused(tmp_path, encoder, generator):
    path = tmp_path / "w_encoder.pt"
    torch.save(e4e_checkpoint(encoder, generator, encoder_type="BackboneEncoderUsingLastLayerIntoW"), path)
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "BackboneEncoderUsingLastLayerIntoW", "not supported")


@pytest.mark.parametrize("shape", [(64,), (1, 64), (10, 64)])
def test_latent_avg_of_any_official_shape_is_broadcast_to_every_style(tmp_path, encoder, generator, shape):
    ckpt = e4e_checkpoint(encoder, generator)
    ckpt["latent_avg"] = generator.w_avg.expand(10, 64)[: 1 if len(shape) == 1 else shape[0]].reshape(shape)
    path = tmp_path / "e4e.pt"
    torch.save(ckpt, path)
    bundle = import_e4e(path)
    assert torch.equal(bundle.encoder["latent_avg"], generator.w_avg.expand(10, 64))
    assert torch.equal(bundle.generator["w_avg"], generator.w_avg)


def test_latent_avg_is_zero_when_the_encoder_does_not_start_from_it(tmp_path, encoder, generator):
    path = tmp_path / "psp.pt"
    torch.save(e4e_checkpoint(encoder, generator, start_from_latent_avg=False), path)
    assert not import_e4e(path).encoder["latent_avg"].any()


def test_stylegan_size_that_contradicts_the_weights_is_refused(tmp_path, encoder, generator):
    path = tmp_path / "e4e.pt"
    torch.save(e4e_checkpoint(encoder, generator, stylegan_size=1024), path)
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "1024", "64x64")


# --- the default path names the real configs -------------------------------------------------------

@pytest.mark.parametrize("factory", [ffhq1024, ffhq256, tiny])
def test_full_size_configs_are_inferred_from_official_shapes(factory):
    config = factory()
    with torch.device("meta"):  # shapes only: no memory, no random init
        generator, encoder = Generator(config.generator), Encoder(config.encoder)
    assert infer_generator_config(g_ema_of(generator.state_dict())) == config.generator
    official = {k.removeprefix("encoder."): v for k, v in encoder_keys_of(encoder.state_dict()).items()}
    assert infer_encoder_config(official) == config.encoder


@pytest.mark.parametrize("config", [ArcFaceConfig(), tiny_arcface()])
def test_arcface_config_is_inferred_from_official_shapes(config):
    with torch.device("meta"):
        state = ArcFace(config).state_dict()
    assert infer_arcface_config(state) == config


# --- rosinality StyleGAN2 ------------------------------------------------------------------------

def test_stylegan2_import_gives_identical_tensors_and_images(stylegan2_file, generator):
    bundle = import_stylegan2(stylegan2_file)
    assert bundle.encoder is None and bundle.config.generator == TINY.generator
    assert_same_state(bundle.generator, generator.state_dict())
    with torch.no_grad():
        assert torch.equal(bundle.build_generator()(codes()), generator(codes()))
    assert bundle.sources[0]["kind"] == "stylegan2"


def test_bare_g_ema_state_dict_is_accepted(tmp_path, generator):
    path = tmp_path / "g_ema.pt"
    torch.save(g_ema_of(generator.state_dict()), path)
    assert import_stylegan2(path).config.generator == TINY.generator


def test_w_avg_is_estimated_when_the_file_has_no_latent_avg(tmp_path, generator):
    path = tmp_path / "550000.pt"
    torch.save(rosinality_checkpoint(generator, latent_avg=False), path)
    rng = torch.random.get_rng_state()
    w_avg = import_stylegan2(path).generator["w_avg"]
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.allclose(w_avg, generator.w_avg, atol=0.05 * generator.w_avg.abs().max().item())


def test_stylegan2_replaces_the_e4e_decoder(tmp_path, e4e_file, encoder):
    other = make_generator(TINY.generator, seed=9)
    path = tmp_path / "other.pt"
    torch.save(rosinality_checkpoint(other), path)
    bundle = import_bundle(e4e=e4e_file, stylegan2=path)
    assert_same_state(bundle.generator, other.state_dict())
    assert_same_state(bundle.encoder, encoder.state_dict())
    assert [s["kind"] for s in bundle.sources] == ["e4e", "stylegan2"]


def test_stylegan2_with_other_w_plus_layers_than_the_encoder_is_refused(tmp_path, e4e_file):
    small = make_generator(dataclasses.replace(TINY.generator, size=32), seed=9)
    path = tmp_path / "small.pt"
    torch.save(rosinality_checkpoint(small), path)
    with pytest.raises(CheckpointError) as excinfo:
        import_bundle(e4e=e4e_file, stylegan2=path)
    assert_one_line_error(excinfo, str(path), "8 x 64", "10 x 64")


# --- ArcFace -------------------------------------------------------------------------------------

def test_arcface_import_gives_identical_tensors_and_embeddings(arcface_file, arcface, e4e_file):
    state, config = import_arcface(arcface_file)
    assert config == tiny_arcface()
    assert_same_state(state, arcface.state_dict())
    bundle = import_bundle(e4e=e4e_file, arcface=arcface_file)
    assert bundle.config.arcface == tiny_arcface()
    assert bundle.sources[-1]["kind"] == "arcface"
    with torch.no_grad():
        x = faces(112)
        assert torch.equal(bundle.build_arcface()(x), arcface(x))


def test_arcface_dataparallel_module_prefix_is_stripped(tmp_path, arcface):
    path = tmp_path / "model_ir_se50.pth"
    torch.save({f"module.{k}": v for k, v in arcface.state_dict().items()}, path)
    state, _ = import_arcface(path)
    assert_same_state(state, arcface.state_dict())


def test_files_from_before_batchnorm_counters_load_as_torch_does(tmp_path, arcface):
    path = tmp_path / "model_ir_se50.pth"
    old = {k: v for k, v in arcface.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path, _use_new_zipfile_serialization=False)  # pre-1.6 format, as TreB1eN's file
    state, config = import_arcface(path)
    reference = ArcFace(config)
    reference.load_state_dict(old, strict=True)  # torch fills the missing counters itself
    assert_same_state(state, reference.state_dict())


# --- bad files: one line naming the file and the problem ------------------------------------------

def edit_e4e(tmp_path, encoder, generator, edit) -> str:
    ckpt = e4e_checkpoint(encoder, generator)
    edit(ckpt["state_dict"])
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    return path


def test_missing_key_is_named(tmp_path, encoder, generator):
    path = edit_e4e(tmp_path, encoder, generator, lambda s: s.pop("encoder.styles.3.linear.bias"))
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "missing 1 key", "encoder.styles.3.linear.bias")


def test_unexpected_key_is_named(tmp_path, encoder, generator):
    path = edit_e4e(tmp_path, encoder, generator, lambda s: s.update({"encoder.extra.weight": torch.ones(1)}))
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "unexpected 1 key", "extra.weight")


def test_wrong_shape_is_named(tmp_path, encoder, generator):
    path = edit_e4e(tmp_path, encoder, generator, lambda s: s.update({"decoder.to_rgb1.bias": torch.ones(3)}))
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "1 shape mismatch", "decoder.to_rgb1.bias", "(3,)",
                          "(1, 3, 1, 1)")


def test_many_missing_keys_are_counted_and_a_few_shown(tmp_path, encoder, generator):
    def drop_noises(state):
        for key in [k for k in state if ".noises." in k]:
            del state[key]

    path = edit_e4e(tmp_path, encoder, generator, drop_noises)
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    message = assert_one_line_error(excinfo, str(path), f"missing {generator.synthesis.num_layers} keys",
                                     "noise buffers")
    assert message.count("noises.noise_") == 5


def test_stylegan2_file_passed_as_e4e_says_to_use_stylegan2(stylegan2_file):
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(stylegan2_file)
    assert_one_line_error(excinfo, str(stylegan2_file), "e4e", "g_ema", "--stylegan2")


def test_e4e_file_passed_as_stylegan2_says_to_use_e4e(e4e_file):
    with pytest.raises(CheckpointError) as excinfo:
        import_stylegan2(e4e_file)
    assert_one_line_error(excinfo, str(e4e_file), "--e4e")


def test_arcface_file_passed_as_e4e_says_to_use_arcface(arcface_file):
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(arcface_file)
    assert_one_line_error(excinfo, str(arcface_file), "--arcface")


def test_dict_without_the_expected_top_level_keys_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "top-level keys weights", "e4e_ffhq_encode.pt")


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096).replace(b"\x80", b"\x00"))
    with pytest.raises(CheckpointError) as excinfo:
        import_stylegan2(path)
    assert_one_line_error(excinfo, str(path), "not a PyTorch checkpoint")


def test_truncated_file_is_reported_as_truncated(tmp_path, e4e_file):
    path = tmp_path / "partial.pt"
    path.write_bytes(e4e_file.read_bytes()[:-5000])
    with pytest.raises(CheckpointError) as excinfo:
        import_e4e(path)
    assert_one_line_error(excinfo, str(path), "truncated")


def test_pickled_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"g_ema": {}, "where": pathlib.PurePosixPath("/data")}, path)
    with pytest.raises(CheckpointError) as excinfo:
        import_stylegan2(path)
    assert_one_line_error(excinfo, str(path), "pickled Python object")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError) as excinfo:
        import_arcface(tmp_path / "nowhere.pth")
    assert_one_line_error(excinfo, "nowhere.pth", "no such file")


def test_two_encoders_or_none_are_refused(e4e_file, arcface_file):
    with pytest.raises(CheckpointError, match="not both"):
        import_bundle(e4e=e4e_file, psp=e4e_file)
    with pytest.raises(CheckpointError, match="nothing to import"):
        import_bundle(arcface=arcface_file)


# --- the command line ----------------------------------------------------------------------------

def test_cli_import_writes_a_bundle_and_prints_a_summary(tmp_path, e4e_file, arcface_file, capsys):
    out = tmp_path / "model.bundle"
    assert main(["import", "--e4e", str(e4e_file), "--arcface", str(arcface_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny" in printed and "encoder" in printed and "generator" in printed and "arcface" in printed
    assert sha256_file(e4e_file)[:16] in printed
    bundle = load_bundle(out)
    assert bundle.arcface is not None and [s["kind"] for s in bundle.sources] == ["e4e", "arcface"]


def test_cli_import_refuses_to_overwrite_without_force(tmp_path, stylegan2_file, capsys):
    out = tmp_path / "model.bundle"
    out.write_bytes(b"keep me")
    assert main(["import", "--stylegan2", str(stylegan2_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep me"
    assert main(["import", "--stylegan2", str(stylegan2_file), "--out", str(out), "--force"]) == 0
    assert load_bundle(out).generator is not None


def test_cli_import_of_a_bad_file_prints_one_line_and_returns_2(tmp_path, capsys):
    bad = tmp_path / "e4e_ffhq_encode.pt"
    bad.write_bytes(b"<html>404 Not Found</html>")
    out = tmp_path / "model.bundle"
    assert main(["import", "--e4e", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(bad) in err
    assert not out.exists()
