"""The FaceAnonyMixer latent mixer, feed-forward, and the key path that feeds it.

The paper optimises each face's latent for 50 steps; a runtime cannot, so the mixer is a single
pass over W+ codes:

- ``layer_mask`` names the W+ layers that come from the key side (default 3-7: identity);
  every other layer is copied from the real face bit for bit (pose, shape, colour, texture).
- ``swap``: masked layers are taken from ``w_key`` as they are (training-free).
- ``learned``: a small residual network refines the masked layers from ``(w_real, w_key)``.
  Its last layer starts at zero, so an untrained learned mixer equals ``swap`` exactly.

The key path (``KeyMapping``) runs once per key: ``z -> mapping -> truncation -> w_key``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import AnonymixerError
from .configs import DEFAULT_LAYER_MASK, DEFAULT_TRUNCATION_PSI

MIXER_MODES = ("swap", "learned")


def validate_layer_mask(layer_mask: tuple[int, ...] | list[int], n_latent: int) -> tuple[int, ...]:
    """Return the mask as a sorted tuple, or raise a one-line error naming the bad layer."""
    mask = tuple(sorted(set(int(i) for i in layer_mask)))
    if not mask:
        raise AnonymixerError("layer mask is empty: at least one W+ layer must come from the key")
    bad = [i for i in mask if not 0 <= i < n_latent]
    if bad:
        raise AnonymixerError(f"layer mask {list(mask)} names layer(s) {bad} outside 0..{n_latent - 1}")
    if len(mask) == n_latent:
        raise AnonymixerError("layer mask covers every W+ layer: nothing of the real face would remain")
    return mask


def parse_layer_mask(text: str) -> tuple[int, ...]:
    """Parse ``"3-7"`` or ``"3,4,5"`` or ``"2-4,9"`` into layer indices."""
    layers: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                layers.extend(range(int(lo), int(hi) + 1))
            elif part:
                layers.append(int(part))
    except ValueError:
        raise AnonymixerError(f"cannot read layer mask {text!r}: use indices and ranges like 3-7 or 3,4,5") from None
    return tuple(layers)


class MixerRefiner(nn.Module):
    """Residual MLP applied to each W+ layer: ``(w_real_l, w_key_l) -> delta_l`` (shared weights)."""

    def __init__(self, style_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * style_dim, hidden)
        self.act = nn.LeakyReLU(0.2)
        self.fc2 = nn.Linear(hidden, style_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, w_real: torch.Tensor, w_key: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(torch.cat([w_real, w_key], dim=-1))))


class Mixer(nn.Module):
    """Mix a face's code with a key's code: ``(w_real (B, L, D), w_key (1|B, L, D)) -> w_prot (B, L, D)``.

    Layers outside ``layer_mask`` are selected from ``w_real`` with ``torch.where``, so they are
    bit-identical to the input (no arithmetic touches them).
    """

    select: torch.Tensor

    def __init__(self, n_latent: int, style_dim: int, layer_mask: tuple[int, ...] = DEFAULT_LAYER_MASK,
                 mode: str = "swap", hidden: int | None = None) -> None:
        super().__init__()
        if mode not in MIXER_MODES:
            raise AnonymixerError(f"unknown mixer mode {mode!r}: choose one of {', '.join(MIXER_MODES)}")
        self.layer_mask = validate_layer_mask(layer_mask, n_latent)
        self.mode = mode
        self.n_latent = n_latent
        self.style_dim = style_dim
        select = torch.zeros(1, n_latent, 1, dtype=torch.bool)
        select[0, list(self.layer_mask), 0] = True
        self.register_buffer("select", select, persistent=False)
        self.refiner = MixerRefiner(style_dim, hidden or style_dim) if mode == "learned" else None

    def forward(self, w_real: torch.Tensor, w_key: torch.Tensor) -> torch.Tensor:
        w_key = w_key.expand_as(w_real)
        key_side = w_key if self.refiner is None else w_key + self.refiner(w_real, w_key)
        return torch.where(self.select, key_side, w_real)


class KeyMapping(nn.Module):
    """The key path: ``z (B, D) -> w_key (B, L, D)`` = truncation of the mapping network's output.

    ``w = w_avg + psi * (mapping(z) - w_avg)``, broadcast to all ``n_latent`` W+ layers.
    """

    def __init__(self, mapping: nn.Module, w_avg: torch.Tensor, n_latent: int,
                 truncation_psi: float = DEFAULT_TRUNCATION_PSI) -> None:
        super().__init__()
        self.mapping = mapping
        self.register_buffer("w_avg", w_avg.detach().clone().reshape(1, -1))
        self.n_latent = n_latent
        self.truncation_psi = float(truncation_psi)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)
        w = self.w_avg + self.truncation_psi * (w - self.w_avg)
        return w.unsqueeze(1).expand(-1, self.n_latent, -1)
