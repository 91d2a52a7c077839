"""The Protector end to end on the torch backend (tiny model, CPU)."""

import numpy as np
import pytest

from anonymixer.errors import InputImageError
from anonymixer.keys import derive_z
from anonymixer.runtime import Protector
from anonymixer.runtime.protector import faces_to_input, output_to_faces


def faces(batch=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(batch, 256, 256, 3), dtype=np.uint8)


def test_same_key_and_input_give_bit_identical_output(tiny_bundle, key):
    a = Protector(tiny_bundle, key).protect(faces())
    b = Protector(tiny_bundle, key).protect(faces())
    assert a.dtype == np.uint8 and a.shape == (2, 64, 64, 3)
    assert np.array_equal(a, b)


def test_different_key_gives_different_output(tiny_bundle, key, other_key):
    a = Protector(tiny_bundle, key).protect_tensor(faces_to_input(faces(), 256))
    b = Protector(tiny_bundle, other_key).protect_tensor(faces_to_input(faces(), 256))
    assert np.abs(a - b).mean() > 1e-3


def test_different_salt_gives_different_output(tiny_bundle, key):
    a = Protector(tiny_bundle, key, salt="site-a").protect_tensor(faces_to_input(faces(), 256))
    b = Protector(tiny_bundle, key, salt="site-b").protect_tensor(faces_to_input(faces(), 256))
    assert not np.array_equal(a, b)


def test_w_prot_keeps_real_layers_and_takes_key_layers_in_swap_mode(tiny_bundle, key):
    protector = Protector(tiny_bundle, key, mixer_mode="swap")
    w_real = protector.backend.stage("encoder").run({"face": faces_to_input(faces(), 256)})["w_real"]
    w_prot = protector.backend.stage("mixer").run({"w_real": w_real, **protector.key_feeds})["w_prot"]
    mask = list(tiny_bundle.config.layer_mask)
    outside = [i for i in range(w_real.shape[1]) if i not in mask]
    assert np.array_equal(w_prot[:, outside], w_real[:, outside])
    w_key = protector.backend.stage("mapping").run({"z": derive_z(key, None, w_real.shape[2])[None]})["w_key"]
    assert np.array_equal(w_prot[:, mask], np.broadcast_to(w_key, w_real.shape)[:, mask])


@pytest.mark.parametrize("mode", ["project", "rotate"])
def test_keyed_modes_keep_faces_apart(tiny_bundle, key, mode):
    """Unlike swap, the keyed mixers give two different faces two different protected codes."""
    protector = Protector(tiny_bundle, key, mixer_mode=mode)
    assert protector.info.mixer_mode == mode
    w_real = protector.backend.stage("encoder").run({"face": faces_to_input(faces(2), 256)})["w_real"]
    w_prot = protector.backend.stage("mixer").run({"w_real": w_real, **protector.key_feeds})["w_prot"]
    mask = list(tiny_bundle.config.layer_mask)
    assert not np.allclose(w_prot[0, mask], w_prot[1, mask])


def test_default_mode_is_project_at_half_the_code(tiny_bundle, key):
    protector = Protector(tiny_bundle, key)
    assert (protector.info.mixer_mode, protector.info.project_rank) == ("project", protector.info.style_dim // 2)


def test_key_material_has_no_batch_axis(tiny_bundle, key):
    protector = Protector(tiny_bundle, key)
    d, n_latent = protector.info.style_dim, protector.info.n_latent
    assert protector.key_feeds["key_matrix"].shape == (d, d)
    assert protector.key_feeds["key_offset"].shape == (n_latent, d)


def test_key_path_runs_once_per_key_not_per_frame(tiny_bundle, key):
    protector = Protector(tiny_bundle, key)
    mapping = protector.backend.stage("mapping")
    calls = []
    original = mapping.run
    mapping.run = lambda feeds: calls.append(1) or original(feeds)
    protector.protect(faces())
    protector.protect(faces())
    assert calls == []


def test_early_exit_returns_the_requested_resolution(tiny_bundle, key):
    out = Protector(tiny_bundle, key, output_resolution=32).protect(faces(1))
    assert out.shape == (1, 32, 32, 3)


def test_batch_of_three_equals_three_batches_of_one(tiny_bundle, key):
    protector = Protector(tiny_bundle, key)
    x = faces_to_input(faces(3), 256)
    together = protector.protect_tensor(x)
    apart = np.concatenate([protector.protect_tensor(x[i:i + 1]) for i in range(3)])
    assert np.linalg.norm(together - apart) / np.linalg.norm(apart) <= 1e-5


def test_stage_timings_are_measured(tiny_bundle, key):
    protector = Protector(tiny_bundle, key)
    protector.protect(faces(1))
    assert set(protector.last_timings_ms) == {"encoder", "mixer", "generator"}
    assert all(ms > 0 for ms in protector.last_timings_ms.values())


@pytest.mark.parametrize("shape,dtype", [((2, 128, 128, 3), np.uint8), ((2, 256, 256), np.uint8),
                                         ((2, 256, 256, 3), np.float32)])
def test_wrong_face_arrays_are_refused(tiny_bundle, key, shape, dtype):
    with pytest.raises(InputImageError, match="256, 256, 3"):
        Protector(tiny_bundle, key).protect(np.zeros(shape, dtype))


def test_repr_names_the_fingerprint_not_the_secret(tiny_bundle, key):
    text = repr(Protector(tiny_bundle, key))
    assert key.fingerprint in text
    assert bytes(range(32)).hex() not in text


def test_pixel_conversions_round_trip():
    x = faces(1)
    assert np.array_equal(output_to_faces(faces_to_input(x, 256)), x)
