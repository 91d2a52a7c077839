"""ArcFace IR-SE50: embedding shape and norm, determinism, and the official checkpoint layout."""

from __future__ import annotations

import pytest
import torch

from anonymixer.models.arcface import ArcFace, make_arcface
from anonymixer.models.configs import ArcFaceConfig, tiny_arcface

TINY = tiny_arcface()


def faces(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, TINY.input_size, TINY.input_size, generator=g) * 2 - 1


def embed(model: ArcFace, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def arcface() -> ArcFace:
    return make_arcface(TINY, seed=0)


def test_arcface_embedding_has_embedding_dim_per_face(arcface: ArcFace) -> None:
    assert embed(arcface, faces(3)).shape == (3, TINY.embedding_dim)


def test_arcface_embedding_is_unit_norm(arcface: ArcFace) -> None:
    norms = embed(arcface, faces(3)).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(3), rtol=0, atol=1e-5)


def test_arcface_embedding_does_not_depend_on_the_rest_of_the_batch(arcface: ArcFace) -> None:
    x = faces(3)
    alone = torch.cat([embed(arcface, x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(embed(arcface, x), alone, rtol=1e-5, atol=1e-6)


def test_arcface_different_faces_give_different_embeddings(arcface: ArcFace) -> None:
    e = embed(arcface, faces(2))
    assert not torch.allclose(e[0], e[1], atol=1e-4)


def test_same_seed_gives_same_arcface() -> None:
    x = faces(1)
    assert torch.equal(embed(make_arcface(TINY, 3), x), embed(make_arcface(TINY, 3), x))
    assert not torch.equal(embed(make_arcface(TINY, 3), x), embed(make_arcface(TINY, 4), x))


# --- the official model_ir_se50.pth layout, built on the meta device ---------------------------

def official_ir_se50_keys() -> set[str]:
    """Key names of TreB1eN's Backbone(50, 0.6, 'ir_se'), written from the architecture description."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"input_layer.0.weight", "input_layer.2.weight"} | {f"input_layer.1.{k}" for k in bn}
    first_of_wider_stage = {3, 7, 21}  # 64->128, 128->256, 256->512: conv shortcut
    for unit in range(24):
        p = f"body.{unit}"
        keys |= {f"{p}.res_layer.1.weight", f"{p}.res_layer.2.weight", f"{p}.res_layer.3.weight",
                 f"{p}.res_layer.5.fc1.weight", f"{p}.res_layer.5.fc2.weight"}
        keys |= {f"{p}.res_layer.{i}.{k}" for i in (0, 4) for k in bn}
        if unit in first_of_wider_stage:
            keys |= {f"{p}.shortcut_layer.0.weight"} | {f"{p}.shortcut_layer.1.{k}" for k in bn}
    keys |= {f"output_layer.{i}.{k}" for i in (0, 4) for k in bn}
    keys |= {"output_layer.3.weight", "output_layer.3.bias"}
    return keys


@pytest.fixture(scope="module")
def ir_se50() -> ArcFace:
    with torch.device("meta"):
        return ArcFace(ArcFaceConfig())


def test_state_dict_names_match_official_model_ir_se50(ir_se50: ArcFace) -> None:
    ours, official = set(ir_se50.state_dict()), official_ir_se50_keys()
    assert ours == official, (sorted(ours - official), sorted(official - ours))


def test_embedding_linear_reads_a_7x7_map_of_512_channels(ir_se50: ArcFace) -> None:
    assert ir_se50.state_dict()["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert len(ir_se50.body) == 24


def test_arcface_ir_se50_has_about_43_8m_parameters(ir_se50: ArcFace) -> None:
    total = sum(p.numel() for p in ir_se50.parameters())
    print(f"ArcFace IR-SE50: {total:,} parameters")
    assert abs(total - 43.8e6) / 43.8e6 < 0.02
