"""The FaceAnonyMixer latent mixer, feed-forward, and the key path that feeds it.

The paper optimises each face's latent for 50 steps; a runtime cannot, so the mixer is a single
pass over codes ``(B, L, D)``:

- ``layer_mask`` names the layers that come from the key side (StyleGAN2: W+ layers 3-7, identity;
  faces64: its one layer); every other layer is copied from the real face bit for bit.
- The key side is ``w_real @ key_matrix + key_offset``: one affine map per key, computed once per
  key by ``anonymixer.keymaterial`` for every mode (``rotate``, ``project``, ``swap``, ``learned``);
  the key tensors are graph inputs without a batch axis.
- ``radius_guard`` (``rotate``/``project``): the mixed code is rescaled, about the code mean, to the
  prior's typical whitened radius ``sqrt(D)``, so that an off-distribution code (a weak encoder's)
  is drawn where the generator has seen codes.
- ``learned``: a small residual network refines the key side from ``(w_real, key_offset)``. Its last
  layer starts at zero, so an untrained learned mixer equals ``swap`` exactly.

The key path (``KeyMapping``) runs once per key: ``z -> mapping -> truncation -> w_key`` (``swap``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..codestats import CodeStats, identity
from ..errors import AnonymixerError
from ..keymaterial import AFFINE_MODES, MIXER_MODES, check_mode
from .configs import DEFAULT_LAYER_MASK, DEFAULT_TRUNCATION_PSI

__all__ = ["MIXER_MODES", "KeyMapping", "Mixer", "parse_layer_mask", "validate_layer_mask"]


def validate_layer_mask(layer_mask: tuple[int, ...] | list[int], n_latent: int) -> tuple[int, ...]:
    """Return the mask as a sorted tuple, or raise a one-line error naming the bad layer."""
    mask = tuple(sorted(set(int(i) for i in layer_mask)))
    if not mask:
        raise AnonymixerError("layer mask is empty: at least one code layer must come from the key")
    bad = [i for i in mask if not 0 <= i < n_latent]
    if bad:
        raise AnonymixerError(f"layer mask {list(mask)} names layer(s) {bad} outside 0..{n_latent - 1}")
    if len(mask) == n_latent > 1:
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
    """``(w_real (B, L, D), key_matrix (D, D), key_offset (L, D)) -> w_prot (B, L, D)``, all float32.

    Layers outside ``layer_mask`` are selected from ``w_real`` with ``torch.where``, so they are
    bit-identical to the input (no arithmetic touches them). ``stats`` (default ``mu = 0, C = I``)
    place the radius guard.
    """

    select: torch.Tensor
    code_mean: torch.Tensor
    whiten: torch.Tensor

    def __init__(self, n_latent: int, style_dim: int, layer_mask: tuple[int, ...] = DEFAULT_LAYER_MASK,
                 mode: str = "project", hidden: int | None = None, stats: CodeStats | None = None,
                 radius_guard: bool = True) -> None:
        super().__init__()
        self.layer_mask = validate_layer_mask(layer_mask, n_latent)
        self.mode = check_mode(mode)
        self.n_latent = n_latent
        self.style_dim = style_dim
        self.radius_guard = bool(radius_guard) and mode in AFFINE_MODES
        select = torch.zeros(1, n_latent, 1, dtype=torch.bool)
        select[0, list(self.layer_mask), 0] = True
        self.register_buffer("select", select, persistent=False)
        stats = stats or identity(style_dim)
        if stats.dim != style_dim:
            raise AnonymixerError(f"code statistics are for D = {stats.dim}, the model's codes have D = {style_dim}")
        self.register_buffer("code_mean", torch.tensor(stats.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("whiten", torch.tensor(stats.inv_sqrt_cov(), dtype=torch.float32), persistent=False)
        self.radius = stats.radius
        self.refiner = MixerRefiner(style_dim, hidden or style_dim) if mode == "learned" else None

    def forward(self, w_real: torch.Tensor, key_matrix: torch.Tensor, key_offset: torch.Tensor) -> torch.Tensor:
        key_side = torch.matmul(w_real, key_matrix) + key_offset
        if self.refiner is not None:
            key_side = key_side + self.refiner(w_real, key_offset.expand_as(w_real))
        if self.radius_guard:
            centred = key_side - self.code_mean
            norm = torch.linalg.vector_norm(torch.matmul(centred, self.whiten), dim=-1, keepdim=True)
            key_side = self.code_mean + centred * (self.radius / norm.clamp_min(1e-6))
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
