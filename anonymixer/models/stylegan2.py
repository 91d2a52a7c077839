"""StyleGAN2 (config-f, skip generator) in an export-friendly form.

Names follow the paper and rosinality/stylegan2-pytorch so that official checkpoints map on by name
(see ``rosinality_key``). What differs from rosinality, all for a clean ONNX graph with a dynamic
batch: modulated convs are non-fused (styles scale activations around a conv with a static weight,
then demodulate), blur/upsampling are depthwise convs with constant kernels (no custom CUDA ops),
noise is the constant ``noises.noise_{i}`` buffers, and synthesis can stop early at any
power-of-two resolution, returning the skip-RGB image there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configs import GeneratorConfig, check_output_resolution


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weights stored as N(0, 1) / lr_mul, scaled at run time.

    ``activation=True`` applies the fused leaky ReLU (slope 0.2, gain sqrt(2)) after the bias.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            if bias is not None:
                out = out + bias
            return F.leaky_relu(out, 0.2) * math.sqrt(2)
        return F.linear(x, self.weight * self.scale, bias)


def rosinality_key(key: str) -> str:
    """Our state-dict key for a key of rosinality's ``g_ema`` (the importer's rename rule).

    ``style.{i}.*`` -> ``mapping.style.{i}.*``; every other key ``K`` -> ``synthesis.K``. Rosinality's
    dict has no ``w_avg``: the importer adds it (from the checkpoint's ``latent_avg`` or ``mean_latent``).
    """
    return f"mapping.{key}" if key.startswith("style.") else f"synthesis.{key}"


def make_kernel(taps: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum 1: ``(K, K) float32``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, channels: int, up: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, then convolve (true convolution) with a static 2-D kernel.

    ``x`` is ``(B, C, H, W)``; returns ``(B, C, H*up + pad0 + pad1 - K + 1, ...)``. Export-minded:
    zeros are inserted by a multiply with a constant one-hot phase, padding is the conv's own
    (symmetric, then a static crop), and the depthwise conv weight folds into an initializer. No Pad
    node: torch exports F.pad with a pads subgraph it cannot constant-fold.
    """
    if up > 1:
        _, _, h, w = x.shape
        first = torch.eye(up, dtype=x.dtype, device=x.device)[0]  # (1, 0, ..., 0)
        x = x[:, :, :, None, :, None] * (first[:, None, None] * first)
        x = x.reshape(-1, channels, h * up, w * up)
    # Flip by gather and broadcast by multiplication: torch's ONNX constant folding handles both
    # (not Slice with negative steps nor Expand).
    flip = torch.arange(kernel.shape[0] - 1, -1, -1, device=kernel.device)
    kernel = kernel.index_select(0, flip).index_select(1, flip)
    weight = kernel * torch.ones(channels, 1, 1, 1, dtype=kernel.dtype, device=kernel.device)
    x = F.conv2d(x, weight, padding=max(pad), groups=channels)
    excess = pad[0] - pad[1]
    if excess > 0:
        x = x[:, :, :-excess, :-excess]
    elif excess < 0:
        x = x[:, :, -excess:, -excess:]
    return x


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square over its features."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, D) -> (B, D)``."""
        return z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """z -> w: PixelNorm then ``n_mlp`` equalized-lr linear layers with leaky ReLU (``style.{i}``)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        layers += [EqualLinear(cfg.style_dim, cfg.style_dim, lr_mul=cfg.lr_mlp, activation=True)
                   for _ in range(cfg.n_mlp)]
        self.style = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, style_dim) float32 -> w (B, style_dim) float32``."""
        return self.style(z)


class Blur(nn.Module):
    """FIR low-pass filter (``kernel`` buffer, times factor**2 when it follows a 2x upsampling)."""

    kernel: torch.Tensor

    def __init__(self, taps: tuple[int, ...], pad: tuple[int, int], channels: int,
                 upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor**2)
        self.pad = pad
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H + pad0 + pad1 - K + 1, ...)``."""
        return upfirdn2d(x, self.kernel, self.channels, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (zero insertion + low-pass), used on the skip-RGB image."""

    kernel: torch.Tensor

    def __init__(self, taps: tuple[int, ...], channels: int, factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.factor = factor
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H*factor, W*factor)``."""
        return upfirdn2d(x, self.kernel, self.channels, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, non-fused: the conv weight is static, styles scale activations.

    ``conv(x * s, W) * d == conv(x, W * s) * d`` with ``d[b, o] = rsqrt(sum_{i,k} (W[o,i,k] s[b,i])^2)``,
    so the graph has no per-sample weights (dynamic batch, plain Conv nodes).

    ``prenormalize`` (FP16 safety, after NVIDIA's stylegan2-ada) divides s by its per-sample max |s|
    and W by its per-output-channel L2 norm before the conv; demodulation cancels both scales. NVIDIA
    divides W by its max |W| instead; the L2 norm bounds the conv output at least as tightly
    (``|y| <= ||x * s||_2`` over the receptive field) and, unlike ReduceMax, torch's ONNX constant
    folding evaluates it, so the Conv weight stays an initializer.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1), prenormalize: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.prenormalize = prenormalize and demodulate
        self.upsample = upsample
        if upsample:
            factor = 2
            p = len(blur_kernel) - factor - (kernel_size - 1)
            pad = ((p + 1) // 2 + factor - 1, p // 2 + 1)
            self.blur = Blur(blur_kernel, pad, out_channel, upsample_factor=factor)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``x (B, in, H, W)``, ``style (B, style_dim)`` -> ``(B, out, H, W)`` (``2H, 2W`` if upsampling)."""
        s = self.modulation(style)
        weight = self.scale * self.weight[0]
        if self.prenormalize:
            weight = weight / torch.linalg.vector_norm(weight, dim=(1, 2, 3), keepdim=True)
            s = s / s.abs().amax(dim=1, keepdim=True)
        x = x * s[:, :, None, None]
        if self.upsample:
            x = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=0))
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # ||W[o, i, :, :]||^2 as ReduceL2 (folded at export; ReduceSum is not).
            weight_sq = torch.linalg.vector_norm(weight, dim=(2, 3)).square()
            demod = torch.rsqrt(s.square() @ weight_sq.t() + 1e-8)
            x = x * demod[:, :, None, None]
        return x


class NoiseInjection(nn.Module):
    """Adds learned-strength per-pixel noise; the noise is a constant buffer owned by the synthesis."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)``, ``noise (1, 1, H, W)`` -> ``(B, C, H, W)``."""
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Bias, leaky ReLU (slope 0.2), gain sqrt(2). Named after rosinality's op; plain PyTorch here."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling), noise, biased leaky ReLU."""

    def __init__(self, in_channel: int, out_channel: int, style_dim: int, upsample: bool = False,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1), prenormalize: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel, prenormalize=prenormalize)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x (B, in, H, W)``, ``style (B, style_dim)``, ``noise (1, 1, H', W')`` -> ``(B, out, H', W')``."""
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) plus bias, added to the upsampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel, channels=3)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, in, H, W)``, ``style (B, style_dim)``, ``skip (B, 3, H/2, W/2)`` -> ``(B, 3, H, W)``."""
        rgb = self.conv(x, style) + self.bias
        if skip is not None:
            rgb = rgb + self.upsample(skip)
        return rgb


class ConstantInput(nn.Module):
    """The learned 4x4 constant that synthesis starts from."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch_like: torch.Tensor) -> torch.Tensor:
        """``(B, ...) -> (B, C, 4, 4)``, the constant broadcast over the batch of ``batch_like``."""
        return self.input.expand(batch_like.shape[0], -1, -1, -1)


class SynthesisNetwork(nn.Module):
    """W+ -> image: constant 4x4, then per resolution two styled convs and a skip ToRGB.

    ``output_resolution`` (a power of two in ``[4, cfg.size]``, changeable after construction) stops
    after that resolution's ToRGB and returns the skip image there; all layers stay in the state dict.
    Layer ``l`` of W+ drives: 0 conv1, 1 to_rgb1, then per block ``i, i+1`` the convs, ``i+2`` ToRGB.
    """

    def __init__(self, cfg: GeneratorConfig, output_resolution: int | None = None,
                 fp16_prenormalize: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        c4, sd, bk = cfg.channels(4), cfg.style_dim, cfg.blur_kernel
        pre = fp16_prenormalize
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, sd, blur_kernel=bk, prenormalize=pre)
        self.to_rgb1 = ToRGB(c4, sd, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channel = c4
        for log_res in range(3, cfg.log_size + 1):
            out_channel = cfg.channels(2**log_res)
            self.convs.append(StyledConv(in_channel, out_channel, sd, upsample=True, blur_kernel=bk,
                                         prenormalize=pre))
            self.convs.append(StyledConv(out_channel, out_channel, sd, blur_kernel=bk, prenormalize=pre))
            self.to_rgbs.append(ToRGB(out_channel, sd, blur_kernel=bk))
            in_channel = out_channel
        self.noises = nn.Module()
        for layer in range(self.num_layers):
            res = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise_{layer}", torch.randn(1, 1, res, res))
        self.output_resolution = output_resolution

    @property
    def num_layers(self) -> int:
        """Styled convs (and noise buffers): 1 at 4x4, 2 per further resolution."""
        return (self.cfg.log_size - 2) * 2 + 1

    @property
    def output_resolution(self) -> int:
        return self._output_resolution

    @output_resolution.setter
    def output_resolution(self, resolution: int | None) -> None:
        resolution = check_output_resolution(self.cfg.size if resolution is None else int(resolution),
                                             self.cfg.size)
        self._output_resolution = resolution

    @property
    def n_latent_used(self) -> int:
        """W+ layers read at the current ``output_resolution`` (18 at 1024, 14 at 256)."""
        return self.cfg.n_latent_at(self.output_resolution)

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        """``w_plus (B, L, style_dim) float32``, ``L >= n_latent_used`` -> ``(B, 3, R, R)`` float32.

        ``R`` is ``output_resolution``. Layers past ``n_latent_used`` are ignored, so an 18-layer code
        drives a 1024 model stopped at 256.
        """
        if not torch.jit.is_tracing() and w_plus.shape[1] < self.n_latent_used:
            raise ValueError(f"W+ code has {w_plus.shape[1]} layers; synthesis at {self.output_resolution}"
                             f" needs at least {self.n_latent_used}")
        noise = [getattr(self.noises, f"noise_{layer}") for layer in range(self.num_layers)]
        x = self.conv1(self.input(w_plus), w_plus[:, 0], noise[0])
        skip = self.to_rgb1(x, w_plus[:, 1])
        n_blocks = int(math.log2(self.output_resolution)) - 2
        for b in range(n_blocks):
            i = 2 * b + 1
            x = self.convs[2 * b](x, w_plus[:, i], noise[i])
            x = self.convs[2 * b + 1](x, w_plus[:, i + 1], noise[i + 1])
            skip = self.to_rgbs[b](x, w_plus[:, i + 2], skip)
        return skip


class Generator(nn.Module):
    """StyleGAN2 generator: ``mapping`` (z -> w), ``synthesis`` (W+ -> image) and ``w_avg``.

    State-dict keys are rosinality's ``g_ema`` keys renamed by ``rosinality_key``, plus ``w_avg``
    (rosinality's dict lacks it; the importer adds it).
    """

    w_avg: torch.Tensor

    def __init__(self, cfg: GeneratorConfig, output_resolution: int | None = None,
                 fp16_prenormalize: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg, output_resolution, fp16_prenormalize)
        self.register_buffer("w_avg", torch.zeros(cfg.style_dim))

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Average ``w`` of ``n`` z ~ N(0, I) drawn on the CPU from ``seed``: ``(style_dim,) float32``."""
        z = torch.randn(n, self.cfg.style_dim, generator=torch.Generator().manual_seed(seed))
        return self.mapping(z.to(self.w_avg.device)).mean(dim=0)

    @property
    def output_resolution(self) -> int:
        """Side of the images drawn, pixels (the early-exit resolution, else ``cfg.size``)."""
        return int(self.synthesis.output_resolution or self.cfg.size)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """``w_avg + psi * (w - w_avg)`` for ``w`` of shape ``(..., style_dim)``."""
        return self.w_avg + psi * (w - self.w_avg)

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        """``w_plus (B, L, style_dim) float32 -> image (B, 3, R, R) float32``, roughly in [-1, 1]."""
        return self.synthesis(w_plus)


def make_generator(cfg: GeneratorConfig, seed: int, output_resolution: int | None = None) -> Generator:
    """Seeded random weights (the global RNG is left alone), ``w_avg = mean_latent()``, eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Generator(cfg, output_resolution=output_resolution)
    with torch.no_grad():
        generator.w_avg.copy_(generator.mean_latent(seed=seed))
        _scale_random_rgb(generator, seed)
    return generator.eval()


RANDOM_RGB_RMS = 0.4


def _scale_random_rgb(generator: Generator, seed: int) -> None:
    """Scale the toRGB weights of a random generator so that its images have an RMS of 0.4.

    Untrained StyleGAN2 images land far outside [-1, 1] (at 256, about two thirds of the pixels
    would clip), which would make accuracy figures of random models (PSNR, INT8 error) meaningless.
    The image is linear in the toRGB weights (their biases start at zero), so one gain fixes it.
    """
    cfg = generator.synthesis.cfg
    synthesis = generator.synthesis
    resolution = synthesis.output_resolution
    synthesis.output_resolution = None
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(8, cfg.style_dim, generator=g)
    w = generator.truncate(generator.mapping(z), 0.7)
    image = synthesis(w[:, None].expand(-1, cfg.n_latent, -1))
    synthesis.output_resolution = resolution
    gain = RANDOM_RGB_RMS / float(image.square().mean().sqrt().clamp_min(1e-8))
    for to_rgb in [synthesis.to_rgb1, *synthesis.to_rgbs]:
        to_rgb.conv.weight.mul_(gain)
