"""e4e / pSp encoder: shapes, code semantics, export, and the official checkpoint layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from anonymixer.models.configs import ffhq1024, tiny
from anonymixer.models.encoder import Encoder, make_encoder
from anonymixer.models.irse import build_body

TINY = tiny().encoder


def faces(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, TINY.input_size, TINY.input_size, generator=g) * 2 - 1


def encode(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder(x)


def head_outputs(encoder: Encoder, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the encoder and record what every style head returned."""
    seen: list[torch.Tensor] = []
    hooks = [s.register_forward_hook(lambda m, i, o: seen.append(o)) for s in encoder.styles]
    try:
        out = encode(encoder, x)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def head_inputs(encoder: Encoder, x: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    hooks = [s.register_forward_pre_hook(lambda m, i: seen.append(i[0])) for s in encoder.styles]
    try:
        encode(encoder, x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.fixture(scope="module")
def e4e() -> Encoder:
    latent_avg = torch.randn(TINY.n_styles, TINY.style_dim, generator=torch.Generator().manual_seed(1))
    return make_encoder(TINY, seed=0, latent_avg=latent_avg)


def test_encoder_outputs_one_code_per_style_layer(e4e: Encoder) -> None:
    out = encode(e4e, faces(2))
    assert out.shape == (2, TINY.n_styles, TINY.style_dim)
    assert out.dtype == torch.float32


def test_e4e_code_is_base_code_plus_its_own_delta(e4e: Encoder) -> None:
    out, heads = head_outputs(e4e, faces(2))
    codes = out - e4e.latent_avg
    torch.testing.assert_close(codes[:, 0], heads[0], rtol=0, atol=1e-6)
    for i in range(1, TINY.n_styles):  # not cumulative: only head 0 and head i contribute
        torch.testing.assert_close(codes[:, i], heads[0] + heads[i], rtol=0, atol=1e-6)


def test_psp_code_is_its_head_output_and_differs_from_e4e(e4e: Encoder) -> None:
    psp = Encoder(dataclasses.replace(TINY, mode="psp")).eval()
    psp.load_state_dict(e4e.state_dict())
    out, heads = head_outputs(psp, faces(2))
    codes = out - psp.latent_avg
    for i in range(TINY.n_styles):
        torch.testing.assert_close(codes[:, i], heads[i], rtol=0, atol=1e-6)
    e4e_out = encode(e4e, faces(2))
    torch.testing.assert_close(out[:, 0], e4e_out[:, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, 1:], e4e_out[:, 1:], rtol=0, atol=1e-6)


def test_heads_read_coarse_middle_and_fine_feature_maps(e4e: Encoder) -> None:
    sides = [t.shape[-1] for t in head_inputs(e4e, faces(1))]
    n_middle = TINY.middle_ind - TINY.coarse_ind
    assert sides == [16] * TINY.coarse_ind + [32] * n_middle + [64] * (TINY.n_styles - TINY.middle_ind)


def test_middle_and_fine_heads_read_fpn_merges(e4e: Encoder) -> None:
    x = faces(1)
    with torch.no_grad():
        c1, c2, c3 = e4e.features(x)
        up = dict(mode="bilinear", align_corners=True)
        p2 = F.interpolate(c3, size=(32, 32), **up) + e4e.latlayer1(c2)
        p1 = F.interpolate(p2, size=(64, 64), **up) + e4e.latlayer2(c1)
    inputs = head_inputs(e4e, x)
    torch.testing.assert_close(inputs[0], c3)
    torch.testing.assert_close(inputs[TINY.coarse_ind], p2)
    torch.testing.assert_close(inputs[TINY.middle_ind], p1)


def test_latent_avg_is_added_to_every_code(e4e: Encoder) -> None:
    zero_avg = Encoder(TINY).eval()
    zero_avg.load_state_dict({**e4e.state_dict(), "latent_avg": torch.zeros_like(e4e.latent_avg)})
    x = faces(2)
    diff = encode(e4e, x) - encode(zero_avg, x)
    torch.testing.assert_close(diff, e4e.latent_avg.expand_as(diff), rtol=0, atol=1e-6)


def test_codes_of_a_face_do_not_depend_on_the_rest_of_the_batch(e4e: Encoder) -> None:
    x = faces(3)
    together = encode(e4e, x)
    alone = torch.cat([encode(e4e, x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_same_encoder_and_other_seed_differs() -> None:
    a, b, c = make_encoder(TINY, seed=7), make_encoder(TINY, seed=7), make_encoder(TINY, seed=8)
    x = faces(1)
    assert torch.equal(encode(a, x), encode(b, x))
    assert not torch.equal(encode(a, x), encode(c, x))


def test_make_encoder_leaves_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    make_encoder(TINY, seed=0)
    assert torch.equal(torch.rand(4), expected)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        Encoder(dataclasses.replace(TINY, mode="restyle"))


def test_onnx_export_matches_torch_at_batch_1_and_3_without_scatternd(tmp_path) -> None:
    # latent_avg stays zero here: a large constant offset would hide errors in the relative error.
    e4e = make_encoder(TINY, seed=0)
    path = tmp_path / "encoder.onnx"
    torch.onnx.export(e4e, (faces(1),), str(path), opset_version=17, dynamo=False,
                      input_names=["face"], output_names=["w"],
                      dynamic_axes={"face": {0: "batch"}, "w": {0: "batch"}})
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "ScatterND" not in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = faces(batch, seed=batch)
        got = session.run(None, {"face": x.numpy()})[0]
        want = encode(e4e, x).numpy()
        assert got.shape == want.shape
        rel = np.abs(got - want).max() / np.abs(want).max()
        assert rel < 1e-5, f"batch {batch}: relative error {rel:.2e}"


# --- the official checkpoint layout (IR-SE50, e4e ffhq 1024), built on the meta device ---------

def official_irse50_body_keys() -> set[str]:
    """Key names of pSp/e4e's IR-SE50 trunk, written from the architecture description."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"input_layer.0.weight", "input_layer.2.weight"} | {f"input_layer.1.{k}" for k in bn}
    widths_in = [64] * 3 + [64] + [128] * 3 + [128] + [256] * 13 + [256] + [512] * 2
    widths_out = [64] * 3 + [128] * 4 + [256] * 14 + [512] * 3
    for unit, (w_in, w_out) in enumerate(zip(widths_in, widths_out, strict=True)):
        p = f"body.{unit}"
        keys |= {f"{p}.res_layer.1.weight", f"{p}.res_layer.2.weight", f"{p}.res_layer.3.weight",
                 f"{p}.res_layer.5.fc1.weight", f"{p}.res_layer.5.fc2.weight"}
        keys |= {f"{p}.res_layer.{i}.{k}" for i in (0, 4) for k in bn}
        if w_in != w_out:
            keys |= {f"{p}.shortcut_layer.0.weight"} | {f"{p}.shortcut_layer.1.{k}" for k in bn}
    return keys


def official_e4e_keys() -> set[str]:
    keys = official_irse50_body_keys()
    keys |= {f"latlayer{i}.{k}" for i in (1, 2) for k in ("weight", "bias")}
    for head in range(18):
        n_convs = 4 if head < 3 else 5 if head < 7 else 6  # log2 of 16, 32, 64
        keys |= {f"styles.{head}.convs.{2 * c}.{k}" for c in range(n_convs) for k in ("weight", "bias")}
        keys |= {f"styles.{head}.linear.weight", f"styles.{head}.linear.bias"}
    return keys


@pytest.fixture(scope="module")
def e4e_ffhq() -> Encoder:
    with torch.device("meta"):
        return Encoder(ffhq1024().encoder)


def test_state_dict_names_match_official_e4e_keys(e4e_ffhq: Encoder) -> None:
    ours = set(e4e_ffhq.state_dict())
    official = official_e4e_keys()
    assert ours - {"latent_avg"} == official, (sorted(ours - official), sorted(official - ours))
    for key in ("body.23.res_layer.5.fc2.weight", "styles.17.convs.10.weight", "latlayer2.weight",
                "body.21.shortcut_layer.1.num_batches_tracked", "styles.0.linear.bias"):
        assert key in ours


def test_latent_avg_is_the_only_key_outside_the_official_set(e4e_ffhq: Encoder) -> None:
    assert set(e4e_ffhq.state_dict()) - official_e4e_keys() == {"latent_avg"}
    assert e4e_ffhq.state_dict()["latent_avg"].shape == (18, 512)


def test_irse50_body_has_24_units_ending_stages_at_2_6_20_23() -> None:
    with torch.device("meta"):
        body, stage_ends = build_body((3, 4, 14, 3), (64, 128, 256, 512), reduction=16)
    assert len(body) == 24
    assert stage_ends == (2, 6, 20, 23)


def test_e4e_ffhq1024_has_about_267m_parameters_236m_in_style_heads(e4e_ffhq: Encoder) -> None:
    total = sum(p.numel() for p in e4e_ffhq.parameters())
    heads = sum(p.numel() for p in e4e_ffhq.styles.parameters())
    print(f"e4e ffhq1024 encoder: {total:,} parameters, {heads:,} in the 18 style heads")
    assert abs(total - 267e6) / 267e6 < 0.02
    assert abs(heads - 236e6) / 236e6 < 0.02


def test_input_size_must_halve_once_per_stage() -> None:
    with pytest.raises(ValueError, match="input_size"):
        Encoder(dataclasses.replace(TINY, input_size=200))


def test_random_encoder_codes_vary_with_the_face_near_latent_avg(e4e: Encoder) -> None:
    codes = encode(e4e, faces(2))
    spread = (codes - e4e.latent_avg).std().item()
    assert 0.02 < spread < 1.0
    assert (codes[0] - codes[1]).abs().mean().item() > 1e-3
