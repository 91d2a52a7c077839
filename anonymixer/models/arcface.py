"""ArcFace IR-SE50 recogniser (TreB1eN InsightFace_Pytorch ``Backbone(50, drop_ratio, 'ir_se')``).

Used for the identity losses and the biometric evaluation: an aligned face (B, 3, 112, 112) in
[-1, 1] -> an L2-normalised embedding (B, 512).

The official checkpoint ``model_ir_se50.pth`` is a plain state dict with exactly these names
(no prefix), which load strictly:

    input_layer.{0.weight, 1.<batchnorm keys>, 2.weight}
    body.{0..23}.res_layer.*, body.{3,7,21}.shortcut_layer.*     (see ``irse``)
    output_layer.0.<batchnorm keys>      BatchNorm2d(512)
    output_layer.3.{weight,bias}         Linear(512 * 7 * 7, 512)
    output_layer.4.<batchnorm keys>      BatchNorm1d(512)

where <batchnorm keys> = weight, bias, running_mean, running_var, num_batches_tracked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anonymixer.models.configs import ArcFaceConfig
from anonymixer.models.irse import build_body, input_layer

# TreB1eN and pSp's ID loss build the backbone with drop_ratio=0.6; it only matters in training.
DEFAULT_DROP_RATIO = 0.6


class ArcFace(nn.Module):
    """IR-SE backbone + BN-Dropout-Flatten-Linear-BN embedding head."""

    def __init__(self, cfg: ArcFaceConfig, drop_ratio: float = DEFAULT_DROP_RATIO) -> None:
        super().__init__()
        n_stages = len(cfg.blocks)
        if cfg.input_size % (2 ** n_stages) != 0:
            raise ValueError(f"ArcFace input_size {cfg.input_size} must be divisible by "
                             f"2**{n_stages} (one halving per backbone stage)")
        self.cfg = cfg
        side = cfg.input_size >> n_stages  # 7 for a 112 input and 4 stages
        width = cfg.widths[-1]
        self.input_layer = input_layer(cfg.widths[0])
        self.body, _ = build_body(cfg.blocks, cfg.widths, cfg.se_reduction)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(width * side * side, cfg.embedding_dim),
            nn.BatchNorm1d(cfg.embedding_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, input_size, input_size) float32 in [-1, 1] -> unit-norm (B, embedding_dim)."""
        x = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(x, p=2.0, dim=1)


def make_arcface(cfg: ArcFaceConfig, seed: int) -> ArcFace:
    """An ArcFace with seeded random weights, in eval mode; the global torch RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ArcFace(cfg)
    return model.eval()
