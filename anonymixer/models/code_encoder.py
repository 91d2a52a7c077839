"""faces64's encoder: an aligned 64x64 face -> the DCGAN code that draws it, ``(B, 1, 100)``.

A small residual CNN (about 2.5 M parameters, 0.17 GMAC per face), trained in this project by
``anonymixer.train.faces64`` on pairs (G(z), z) drawn on the fly, with a code loss, a pixel loss
and an identity loss through the frozen generator (see there). Shaped for export: Conv + BatchNorm
(folded by the exporter in eval mode) + Relu, one Reshape into the ``(B, L, D)`` code.

    stem   3 -> w0, 3x3, 64 px
    stage  w_{i-1} -> w_i: residual block, stride 2 (64 -> 32 -> 16 -> 8 -> 4 px)
    head   1x1 conv to 64 channels, flatten (64 * 4 * 4), Linear -> hidden -> Linear -> code
"""

from __future__ import annotations

import torch
from torch import nn

from .configs import CodeEncoderConfig


class DownBlock(nn.Module):
    """Residual block that halves the side: two 3x3 convs (the first strided) + a 1x1 strided shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, 2, 0, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.shortcut(x))


class CodeEncoder(nn.Module):
    """``face (B, 3, 64, 64) float32 in [-1, 1] RGB -> w_real (B, 1, code_dim)``."""

    def __init__(self, config: CodeEncoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        self.stages = nn.Sequential(*(DownBlock(a, b) for a, b in zip(w[:-1], w[1:])))
        side = config.input_size >> (len(w) - 1)
        self.reduce = nn.Sequential(nn.Conv2d(w[-1], 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(64 * side * side, config.hidden), nn.ReLU(),
                                  nn.Linear(config.hidden, config.code_dim))

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.stages(self.stem(face)))
        return self.head(x.flatten(1)).unsqueeze(1)


def make_code_encoder(config: CodeEncoderConfig, seed: int = 0) -> CodeEncoder:
    """A freshly initialised encoder (PyTorch's default init under ``seed``), eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CodeEncoder(config).eval()
