"""The mixer: which W+ layers come from where, and the learned mode's starting point."""

import pytest
import torch

from anonymixer.errors import AnonymixerError
from anonymixer.models.mixer import KeyMapping, Mixer, parse_layer_mask

L, D = 10, 16


def codes(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, L, D, generator=g), torch.randn(1, L, D, generator=g)


def test_layers_outside_the_mask_equal_w_real_exactly():
    w_real, w_key = codes()
    w_prot = Mixer(L, D, (3, 4, 5, 6, 7))(w_real, w_key)
    outside = [i for i in range(L) if i not in (3, 4, 5, 6, 7)]
    assert torch.equal(w_prot[:, outside], w_real[:, outside])


def test_swap_takes_masked_layers_from_the_key():
    w_real, w_key = codes()
    w_prot = Mixer(L, D, (3, 4, 5, 6, 7), mode="swap")(w_real, w_key)
    assert torch.equal(w_prot[:, 3:8], w_key.expand(3, -1, -1)[:, 3:8])


def test_untrained_learned_mixer_equals_swap():
    w_real, w_key = codes()
    swap = Mixer(L, D, mode="swap")(w_real, w_key)
    learned = Mixer(L, D, mode="learned")(w_real, w_key)
    assert torch.equal(swap, learned)


def test_trained_learned_mixer_changes_only_masked_layers():
    w_real, w_key = codes()
    mixer = Mixer(L, D, (2, 5), mode="learned")
    torch.nn.init.normal_(mixer.refiner.fc2.weight)
    w_prot = mixer(w_real, w_key)
    assert not torch.equal(w_prot[:, [2, 5]], w_key.expand(3, -1, -1)[:, [2, 5]])
    keep = [i for i in range(L) if i not in (2, 5)]
    assert torch.equal(w_prot[:, keep], w_real[:, keep])


def test_per_sample_keys_are_accepted():
    w_real, _ = codes()
    w_key = torch.randn(3, L, D)
    w_prot = Mixer(L, D)(w_real, w_key)
    assert torch.equal(w_prot[:, 3:8], w_key[:, 3:8])


@pytest.mark.parametrize("mask", [(), (10,), (-1,), tuple(range(L))])
def test_bad_layer_masks_are_refused(mask):
    with pytest.raises(AnonymixerError):
        Mixer(L, D, mask)


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
