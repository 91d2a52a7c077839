"""The mixer: which layers come from where, the keyed modes' maps, and their key material."""

import numpy as np
import pytest
import torch

from anonymixer import codestats
from anonymixer.errors import AnonymixerError
from anonymixer.keymaterial import (KeyMaterial, affine_material, haar_orthogonal, inverse, key_material,
                                    streams_for, swap_material)
from anonymixer.keys import Key
from anonymixer.models.mixer import KeyMapping, Mixer, parse_layer_mask

L, D = 10, 16
MASK = (3, 4, 5, 6, 7)
KEY = Key(bytes(range(32)))
SALT = b"mixer-test"


def codes(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, L, D, generator=torch.Generator().manual_seed(seed))


def normals(mode: str, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)   # test data only; the key path draws from anonymixer.keys
    return {name: rng.standard_normal(count) for name, count in streams_for(mode, D).items()}


def measured_stats(seed: int = 2) -> codestats.CodeStats:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((D, D)) * np.linspace(0.2, 2.0, D)
    return codestats.from_samples(rng.standard_normal((4000, D)) @ mixing + rng.standard_normal(D))


def run(mixer: Mixer, w_real: torch.Tensor, material: KeyMaterial) -> torch.Tensor:
    return mixer(w_real, torch.from_numpy(material.matrix).to(w_real.dtype),
                 torch.from_numpy(material.offset).to(w_real.dtype))


def rotate_material(stats: codestats.CodeStats | None = None) -> KeyMaterial:
    return affine_material("rotate", stats or codestats.identity(D), L, normals("rotate"))


@pytest.mark.parametrize("mode", ["rotate", "project", "swap", "learned"])
def test_layers_outside_the_mask_equal_w_real_exactly(mode):
    w_real = codes()
    material = swap_material(codes(1, 5)[0]) if mode in ("swap", "learned") else \
        affine_material(mode, codestats.identity(D), L, normals(mode), rank=4)
    w_prot = run(Mixer(L, D, MASK, mode=mode), w_real, material)
    outside = [i for i in range(L) if i not in MASK]
    assert torch.equal(w_prot[:, outside], w_real[:, outside])
    assert not torch.allclose(w_prot[:, list(MASK)], w_real[:, list(MASK)])


def test_swap_takes_masked_layers_from_the_key():
    w_key = codes(1, 5)[0]
    w_prot = run(Mixer(L, D, MASK, mode="swap"), codes(), swap_material(w_key))
    assert torch.equal(w_prot[:, 3:8], w_key.expand(3, -1, -1)[:, 3:8])


def test_swap_gives_every_face_the_same_identity_layers():
    w_prot = run(Mixer(L, D, MASK, mode="swap"), codes(), swap_material(codes(1, 5)[0]))
    assert torch.equal(w_prot[0, 3:8], w_prot[1, 3:8])


def test_untrained_learned_mixer_equals_swap():
    material = swap_material(codes(1, 5)[0])
    assert torch.equal(run(Mixer(L, D, mode="swap"), codes(), material),
                       run(Mixer(L, D, mode="learned"), codes(), material))


def test_trained_learned_mixer_changes_only_masked_layers():
    w_key = codes(1, 5)[0]
    mixer = Mixer(L, D, (2, 5), mode="learned")
    torch.nn.init.normal_(mixer.refiner.fc2.weight)
    w_prot = run(mixer, codes(), swap_material(w_key))
    assert not torch.equal(w_prot[:, [2, 5]], w_key.expand(3, -1, -1)[:, [2, 5]])
    keep = [i for i in range(L) if i not in (2, 5)]
    assert torch.equal(w_prot[:, keep], codes()[:, keep])


def test_haar_matrix_is_orthogonal():
    q = haar_orthogonal(np.random.default_rng(0).standard_normal(D * D), D)
    np.testing.assert_allclose(q @ q.T, np.eye(D), atol=1e-12)


def test_rotate_keeps_whitened_distances_between_people():
    stats = measured_stats()
    mixer = Mixer(L, D, MASK, mode="rotate", stats=stats, radius_guard=False)
    w = codes(4).double()
    w_prot = run(mixer.double(), w, rotate_material(stats)).numpy()
    whiten = stats.inv_sqrt_cov()
    before = np.linalg.norm((w[0, 4].numpy() - w[1, 4].numpy()) @ whiten)
    after = np.linalg.norm((w_prot[0, 4] - w_prot[1, 4]) @ whiten)
    assert after == pytest.approx(before, rel=1e-4)


def test_rotate_matches_its_formula():
    """w' = mu + C^1/2 Q C^-1/2 (w - mu), written out with column vectors."""
    stats = measured_stats()
    nrm = normals("rotate")
    q = haar_orthogonal(nrm["rotation"], D)
    material = affine_material("rotate", stats, L, nrm)
    w = np.random.default_rng(3).standard_normal(D) * 2 + 1
    expected = stats.mean + stats.sqrt_cov() @ q @ stats.inv_sqrt_cov() @ (w - stats.mean)
    np.testing.assert_allclose(w @ material.matrix + material.offset[0], expected, rtol=1e-4, atol=1e-4)


def test_radius_guard_puts_mixed_codes_on_the_prior_radius():
    stats = measured_stats()
    mixer = Mixer(L, D, MASK, mode="rotate", stats=stats, radius_guard=True)
    small = torch.from_numpy(stats.mean).float() + 0.1 * codes()
    w_prot = run(mixer, small, rotate_material(stats)).double().numpy()
    radius = np.linalg.norm((w_prot[:, 4] - stats.mean) @ stats.inv_sqrt_cov(), axis=-1)
    np.testing.assert_allclose(radius, np.sqrt(D), rtol=1e-4)


def test_radius_guard_is_off_for_swap():
    assert not Mixer(L, D, mode="swap", radius_guard=True).radius_guard


def test_project_is_many_to_one():
    """Two codes that differ only outside the kept subspace get the same protected code."""
    nrm = normals("project")
    material = affine_material("project", codestats.identity(D), L, nrm, rank=4)
    kept = haar_orthogonal(nrm["project"], D)[:, :4]
    w = codes(1).double()
    away = torch.from_numpy(haar_orthogonal(nrm["project"], D)[:, 4]).double()
    mixer = Mixer(L, D, MASK, mode="project", radius_guard=False).double()
    a = run(mixer, w, material)
    b = run(mixer, w + 3.0 * away, material)
    torch.testing.assert_close(a[:, list(MASK)], b[:, list(MASK)], atol=1e-4, rtol=1e-4)
    assert np.linalg.matrix_rank(material.matrix.astype(np.float64), tol=1e-4) == kept.shape[1]


def test_project_rank_is_checked():
    with pytest.raises(AnonymixerError, match="rank"):
        affine_material("project", codestats.identity(D), L, normals("project"), rank=D + 1)


def test_stolen_rotate_key_undoes_the_rotation():
    stats = measured_stats()
    material = rotate_material(stats)
    mixer = Mixer(L, D, MASK, mode="rotate", stats=stats, radius_guard=False).double()
    w = codes().double()
    undo = inverse(material, stats.mean)
    back = run(mixer, run(mixer, w, material), undo)
    torch.testing.assert_close(back, w, atol=1e-3, rtol=1e-3)


def test_stolen_project_key_recovers_exactly_the_kept_subspace():
    nrm = normals("project")
    material = affine_material("project", codestats.identity(D), L, nrm, rank=12)   # float32, rank 12
    basis = haar_orthogonal(nrm["project"], D)[:, :12]
    mixer = Mixer(L, D, MASK, mode="project", radius_guard=False).double()
    w = codes().double()
    back = run(mixer, run(mixer, w, material), inverse(material, np.zeros(D))).numpy()
    kept = w.numpy()[:, list(MASK)] @ basis @ basis.T
    np.testing.assert_allclose(back[:, list(MASK)], kept, atol=1e-3)


def test_stolen_swap_key_recovers_only_the_mean():
    undo = inverse(swap_material(codes(1, 5)[0]), np.zeros(D))
    assert not undo.matrix.any() and not undo.offset.any()


def test_key_material_is_deterministic_and_key_dependent():
    stats = codestats.identity(D)
    a = key_material(KEY, SALT, "rotate", stats, L)
    b = key_material(KEY, SALT, "rotate", stats, L)
    c = key_material(Key(bytes(range(1, 33))), SALT, "rotate", stats, L)
    assert np.array_equal(a.matrix, b.matrix) and np.array_equal(a.offset, b.offset)
    assert not np.allclose(a.matrix, c.matrix)
    assert a.matrix.dtype == np.float32 and a.matrix.shape == (D, D) and a.offset.shape == (L, D)


def test_swap_key_material_runs_the_mapping_once():
    calls = []

    class Mapping:
        def run(self, feeds):
            calls.append(feeds["z"].shape)
            return {"w_key": np.repeat(feeds["z"][:, None, :], L, axis=1)}

    material = key_material(KEY, SALT, "swap", codestats.identity(D), L, mapping=Mapping())
    assert calls == [(1, D)]
    assert not material.matrix.any() and material.offset.shape == (L, D)


@pytest.mark.parametrize("mask", [(), (10,), (-1,), tuple(range(L))])
def test_bad_layer_masks_are_refused(mask):
    with pytest.raises(AnonymixerError):
        Mixer(L, D, mask)


def test_a_single_layer_code_may_be_mixed_whole():
    assert Mixer(1, D, (0,)).layer_mask == (0,)


def test_unknown_mode_is_refused():
    with pytest.raises(AnonymixerError, match="unknown mixer mode"):
        Mixer(L, D, mode="optimise")


def test_layer_mask_text_is_parsed():
    assert parse_layer_mask("3-7") == (3, 4, 5, 6, 7)
    assert parse_layer_mask("1,4-5, 9") == (1, 4, 5, 9)
    with pytest.raises(AnonymixerError):
        parse_layer_mask("three")


def test_key_mapping_truncates_towards_w_avg_and_repeats_layers():
    mapping = torch.nn.Linear(D, D)
    w_avg = torch.randn(D)
    z = torch.randn(2, D)
    w_key = KeyMapping(mapping, w_avg, L, truncation_psi=0.5)(z)
    expected = w_avg + 0.5 * (mapping(z) - w_avg)
    assert w_key.shape == (2, L, D)
    torch.testing.assert_close(w_key[:, 4], expected)
    assert torch.equal(w_key[:, 0], w_key[:, L - 1])
