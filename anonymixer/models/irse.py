"""IR-SE building blocks shared by the e4e / pSp encoder and the ArcFace recogniser.

The module and attribute names are the ones of the public reference code (pSp / e4e
``models/encoders/helpers.py`` and TreB1eN's InsightFace_Pytorch ``model.py``), so that their
checkpoints load by name:

    input_layer.{0: Conv2d, 1: BatchNorm2d, 2: PReLU}
    body.{i}.shortcut_layer.{0: Conv2d 1x1, 1: BatchNorm2d}     (only where in_channel != depth)
    body.{i}.res_layer.{0: BatchNorm2d, 1: Conv2d, 2: PReLU, 3: Conv2d, 4: BatchNorm2d,
                        5: SEModule(fc1, fc2)}

IR-SE50 has 3 + 4 + 14 + 3 = 24 units; the last unit of each stage is 2, 6, 20, 23.
"""

from __future__ import annotations

from torch import Tensor, nn


class SEModule(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a gate computed from the global average."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """Improved residual unit with SE (``bottleneck_IR_SE``): BN-Conv-PReLU-Conv-BN-SE + shortcut.

    The stride sits on the second 3x3 conv and on the shortcut. When the width does not change,
    the shortcut is a 1x1 max-pool (a parameter-free subsampling), as in the reference code.
    """

    def __init__(self, in_channel: int, depth: int, stride: int, reduction: int = 16) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def input_layer(width: int) -> nn.Sequential:
    """Stem: 3x3 conv from RGB to ``width`` channels at full resolution, BN, PReLU."""
    return nn.Sequential(
        nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.PReLU(width),
    )


def build_body(blocks: tuple[int, ...], widths: tuple[int, ...],
               reduction: int) -> tuple[nn.Sequential, tuple[int, ...]]:
    """The IR-SE trunk as one flat ``nn.Sequential`` of units, and the index of each stage's last unit.

    Stage ``s`` has ``blocks[s]`` units ending at ``widths[s]`` channels; its first unit halves the
    resolution. Stage 0 reads ``widths[0]`` channels (the stem's output). For IR-SE50
    (``blocks=(3, 4, 14, 3)``) the stage ends are ``(2, 6, 20, 23)``.
    """
    if len(blocks) != len(widths) or not blocks or min(blocks) < 1:
        raise ValueError(f"IR-SE body needs one width per stage and at least one unit per stage, "
                         f"got blocks={blocks}, widths={widths}")
    units: list[nn.Module] = []
    stage_ends: list[int] = []
    in_channel = widths[0]
    for n_units, depth in zip(blocks, widths):
        units.append(BottleneckIRSE(in_channel, depth, stride=2, reduction=reduction))
        units.extend(BottleneckIRSE(depth, depth, stride=1, reduction=reduction)
                     for _ in range(n_units - 1))
        stage_ends.append(len(units) - 1)
        in_channel = depth
    return nn.Sequential(*units), tuple(stage_ends)
