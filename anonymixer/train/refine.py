"""Enrolment-time refinement of faces64 codes: a few optimisation steps from the encoder's code.

The paper optimises each face's latent; our runtime does one encoder pass. Where a face is enrolled
once (an enrolment photo, not a live frame), a few steps of the same losses as training, from the
encoder's code, bring the reconstruction closer to the person::

    w = refine_codes(generator, identity, w0, target, steps=30)

    loss = |G(w) - target|_1 + w_id * (1 - cos(F(G(w)), F(target))) + w_anchor * |w - w0|^2 / D

``target``: ``(B, 3, 64, 64)`` aligned faces in [-1, 1]; ``w0``: ``(B, 1, 100)`` their encoder
codes; ``F``: SFace (``train.faces64.IdentityLoss``). The anchor keeps the code near where the
encoder put it (and so near the generator's prior). Measured in ``benchmarks/faces64_encoder.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.dcgan import Faces64Generator
from .faces64 import IdentityLoss


def refine_codes(generator: Faces64Generator, identity: IdentityLoss, w0: torch.Tensor, target: torch.Tensor,
                 steps: int = 30, lr: float = 0.05, w_id: float = 1.0, w_anchor: float = 0.05) -> torch.Tensor:
    """``steps`` Adam steps on the codes (module docstring); returns ``(B, 1, 100)`` refined codes."""
    if steps <= 0:
        return w0.detach().clone()
    generator.requires_grad_(False)
    identity.requires_grad_(False)
    with torch.no_grad():
        target_embedding = identity.embed(target)
    w = w0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        image = generator(w)
        loss = (F.l1_loss(image, target, reduction="none").flatten(1).mean(1)
                + w_id * identity(image, target_embedding)
                + w_anchor * ((w - w0) ** 2).flatten(1).mean(1)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return w.detach()
