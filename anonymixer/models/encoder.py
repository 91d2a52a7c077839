"""e4e / pSp encoders: an aligned face (B, 3, 256, 256) -> W+ codes (B, n_styles, style_dim).

``mode="e4e"`` is e4e's ``Encoder4Editing``: head 0 predicts one base code ``w0`` from the
coarsest features and every other head predicts a delta, ``code_i = w0 + delta_i`` (deltas are
not accumulated). ``mode="psp"`` is pSp's ``GradualStyleEncoder``: ``code_i = head_i(features)``.
Both add ``latent_avg`` (``start_from_latent_avg``, as both repositories do at inference).

Feature maps (IR-SE50, 256 input): c1 = body unit 6 (128 ch, 64x64), c2 = unit 20 (256 ch,
32x32), c3 = unit 23 (512 ch, 16x16); the FPN merges p2 = up(c3) + latlayer1(c2) and
p1 = up(p2) + latlayer2(c1). Heads ``< coarse_ind`` read c3, heads ``< middle_ind`` read p2,
the rest read p1.

State-dict keys are the official ones once the ``encoder.`` prefix of an e4e/pSp checkpoint
(``ckpt["state_dict"]``) is stripped:

    input_layer.{0.weight, 1.{weight,bias,running_mean,running_var,num_batches_tracked}, 2.weight}
    body.{0..23}.res_layer.{0,4}.<batchnorm keys>, res_layer.{1,3}.weight, res_layer.2.weight
                 res_layer.5.fc1.weight, res_layer.5.fc2.weight
    body.{3,7,21}.shortcut_layer.0.weight, shortcut_layer.1.<batchnorm keys>
    styles.{0..17}.convs.{0,2,4,...}.{weight,bias}, styles.{i}.linear.{weight,bias}
    latlayer1.{weight,bias}, latlayer2.{weight,bias}
    latent_avg                 (ours only: the checkpoint keeps it as a top-level ``latent_avg``
                                entry, shape (n_styles, style_dim) or (style_dim,); an importer
                                broadcasts it into this buffer)

``latent_avg`` is the only key here that is not among the official ``encoder.*`` keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anonymixer.models.configs import EncoderConfig
from anonymixer.models.irse import build_body, input_layer
from anonymixer.models.stylegan2 import EqualLinear

# Random heads are rescaled so that random codes vary with the face about as much as a trained
# e4e's do around latent_avg (a spread of a few tenths), neither pinned to latent_avg nor far
# outside the region where StyleGAN2 synthesis behaves (and stays finite in FP16). PyTorch's
# default conv init shrinks the heads' input a lot: measured code std is about 0.009 (ffhq1024)
# and 0.024 (tiny) at gain 1, so a gain of 10 gives about 0.1-0.25.
RANDOM_HEAD_GAIN = 10.0

MODES = ("e4e", "psp")


class GradualStyleBlock(nn.Module):
    """One style head: stride-2 convs from a (spatial x spatial) map down to 1x1, then a linear.

    ``log2(spatial)`` convs with LeakyReLU (slope 0.01), ``convs.{0,2,4,...}`` hold the weights.
    """

    def __init__(self, in_c: int, out_c: int, spatial: int) -> None:
        super().__init__()
        n_convs = int(round(math.log2(spatial))) if spatial >= 2 else 0
        if 2 ** n_convs != spatial:
            raise ValueError(f"a style head needs a power-of-two feature map side >= 2, got {spatial}")
        self.out_c = out_c
        self.spatial = spatial
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, kernel_size=3, stride=2, padding=1),
                                   nn.LeakyReLU()]
        for _ in range(n_convs - 1):
            layers += [nn.Conv2d(out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_c, spatial, spatial) -> (B, out_c)."""
        return self.linear(self.convs(x).reshape(-1, self.out_c))


def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
    """FPN merge: bilinear-resize ``x`` to ``y``'s size (align_corners=True, as pSp/e4e) and add ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder(nn.Module):
    """e4e ``Encoder4Editing`` (``cfg.mode == "e4e"``) or pSp ``GradualStyleEncoder`` (``"psp"``).

    The last three backbone stages give c1, c2, c3 (IR-SE50: units 6, 20, 23).
    """

    latent_avg: Tensor

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        self.mode = cfg.mode
        self.n_styles = cfg.n_styles
        self.coarse_ind = cfg.coarse_ind
        self.middle_ind = cfg.middle_ind

        self.input_layer = input_layer(cfg.widths[0])
        self.body, stage_ends = build_body(cfg.blocks, cfg.widths, cfg.se_reduction)
        self.feature_units = stage_ends[-3:]  # c1, c2, c3

        coarse_side = cfg.input_size >> len(cfg.blocks)
        self.styles = nn.ModuleList()
        for i in range(cfg.n_styles):
            spatial = coarse_side if i < cfg.coarse_ind else \
                2 * coarse_side if i < cfg.middle_ind else 4 * coarse_side
            self.styles.append(GradualStyleBlock(cfg.widths[-1], cfg.style_dim, spatial))
        self.latlayer1 = nn.Conv2d(cfg.widths[-2], cfg.widths[-1], kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(cfg.widths[-3], cfg.widths[-1], kernel_size=1, stride=1, padding=0)
        self.register_buffer("latent_avg", torch.zeros(cfg.n_styles, cfg.style_dim))

    def features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Backbone feature maps (c1, c2, c3), finest first: (B, widths[-3|-2|-1], H/4|8|16, ...)."""
        x = self.input_layer(x)
        taps: list[Tensor] = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.feature_units:
                taps.append(x)
        c1, c2, c3 = taps
        return c1, c2, c3

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, input_size, input_size) float32 in [-1, 1] -> W+ codes (B, n_styles, style_dim)."""
        c1, c2, c3 = self.features(x)
        # Only build the FPN levels some head reads, so the exported graph has no dead branches.
        p2 = _upsample_add(c3, self.latlayer1(c2)) if self.coarse_ind < self.n_styles else c3
        p1 = _upsample_add(p2, self.latlayer2(c1)) if self.middle_ind < self.n_styles else p2

        heads: list[Tensor] = []
        for i, style in enumerate(self.styles):
            source = c3 if i < self.coarse_ind else p2 if i < self.middle_ind else p1
            heads.append(style(source))

        if self.mode == "e4e":
            w0 = heads[0]
            codes = [w0] + [w0 + delta for delta in heads[1:]]
        else:
            codes = heads
        # A list and one stack, never indexed writes: the ONNX graph stays free of ScatterND.
        return torch.stack(codes, dim=1) + self.latent_avg


def make_encoder(cfg: EncoderConfig, seed: int, latent_avg: Tensor | None = None) -> Encoder:
    """An encoder with seeded random weights, in eval mode.

    The heads' final linear weights are scaled by ``RANDOM_HEAD_GAIN`` (see its comment).
    ``latent_avg`` ((n_styles, style_dim) or (style_dim,)) should be the mean W of the generator
    the codes will drive; it stays zero when not given. The global torch RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = Encoder(cfg)
    with torch.no_grad():
        for block in encoder.modules():
            if isinstance(block, GradualStyleBlock):
                block.linear.weight.mul_(RANDOM_HEAD_GAIN)
        if latent_avg is not None:
            encoder.latent_avg.copy_(torch.as_tensor(latent_avg, dtype=torch.float32)
                                     .expand_as(encoder.latent_avg))
    return encoder.eval()


def _check_config(cfg: EncoderConfig) -> None:
    if cfg.mode not in MODES:
        raise ValueError(f"encoder mode must be one of {MODES}, got {cfg.mode!r}")
    if len(cfg.blocks) < 3:
        raise ValueError(f"the encoder taps the last three backbone stages; got {len(cfg.blocks)}")
    if not 1 <= cfg.coarse_ind <= cfg.middle_ind <= cfg.n_styles:
        raise ValueError(f"need 1 <= coarse_ind <= middle_ind <= n_styles, got "
                         f"{cfg.coarse_ind}, {cfg.middle_ind}, {cfg.n_styles}")
    if cfg.input_size % (2 ** len(cfg.blocks)) != 0:
        raise ValueError(f"input_size {cfg.input_size} must be divisible by "
                         f"2**{len(cfg.blocks)} (one halving per backbone stage)")
