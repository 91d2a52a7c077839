"""Model configurations: full-size FFHQ models and a tiny one of the same architecture for tests.

A config is plain data (frozen dataclasses) so that it can be written into a model bundle as JSON
and read back without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ResolutionError

# W+ layers whose codes come from the key side by default: 3-7 carry identity (FaceAnonyMixer).
DEFAULT_LAYER_MASK: tuple[int, ...] = (3, 4, 5, 6, 7)
DEFAULT_TRUNCATION_PSI = 0.7


MIN_OUTPUT_RESOLUTION = 4  # the generator's constant input: the first ToRGB


def check_output_resolution(resolution: int, size: int) -> int:
    """``resolution`` if it is a power of two in ``[4, size]`` (where the generator can stop), else
    a one-line ``ResolutionError`` listing the choices."""
    if not MIN_OUTPUT_RESOLUTION <= resolution <= size or resolution & (resolution - 1):
        choices = [2**i for i in range(2, int(math.log2(size)) + 1)]
        raise ResolutionError(f"output resolution {resolution} is not a power of two between "
                              f"{MIN_OUTPUT_RESOLUTION} and {size} (this model's size); choose one of "
                              f"{', '.join(map(str, choices))}, or drop --resolution")
    return resolution


@dataclass(frozen=True)
class GeneratorConfig:
    """StyleGAN2 (config-f, skip generator) hyper-parameters, in rosinality's vocabulary.

    ``channels(res)`` follows rosinality's table: 512 up to 32x32, then ``base * multiplier / res``.
    """

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_base: int = 16384
    channel_max: int = 512
    lr_mlp: float = 0.01
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of W+ layers: 18 at 1024, 14 at 256."""
        return self.log_size * 2 - 2

    def channels(self, res: int) -> int:
        return min(self.channel_max, self.channel_base * self.channel_multiplier // res)

    def n_latent_at(self, resolution: int) -> int:
        """W+ layers that synthesis reads when it stops at ``resolution`` (14 for 256)."""
        return int(math.log2(resolution)) * 2 - 2


@dataclass(frozen=True)
class EncoderConfig:
    """e4e / pSp encoder: IR-SE backbone (``blocks`` units per stage, ``widths`` channels) + style heads.

    ``mode`` is ``"e4e"`` (Encoder4Editing: one base code plus per-layer deltas) or ``"psp"``
    (GradualStyleEncoder: every layer predicted directly). Heads ``< coarse_ind`` read the coarsest
    feature map, heads ``< middle_ind`` the middle one, the rest the finest.
    """

    n_styles: int = 18
    style_dim: int = 512
    input_size: int = 256
    blocks: tuple[int, ...] = (3, 4, 14, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    se_reduction: int = 16
    mode: str = "e4e"
    coarse_ind: int = 3
    middle_ind: int = 7


@dataclass(frozen=True)
class ArcFaceConfig:
    """ArcFace IR-SE backbone (TreB1eN layout), input 112x112 RGB in [-1, 1], 512-d embedding."""

    input_size: int = 112
    blocks: tuple[int, ...] = (3, 4, 14, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    se_reduction: int = 16
    embedding_dim: int = 512


@dataclass(frozen=True)
class ModelConfig:
    """Everything the protection pipeline needs to rebuild its networks."""

    name: str
    generator: GeneratorConfig
    encoder: EncoderConfig
    truncation_psi: float = DEFAULT_TRUNCATION_PSI
    layer_mask: tuple[int, ...] = DEFAULT_LAYER_MASK
    arcface: ArcFaceConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        arc = data.get("arcface")
        arcface = ArcFaceConfig(**_json_fields(arc)) if arc else None
        return cls(
            name=data["name"],
            generator=GeneratorConfig(**_json_fields(data["generator"])),
            encoder=EncoderConfig(**_json_fields(data["encoder"])),
            truncation_psi=float(data.get("truncation_psi", DEFAULT_TRUNCATION_PSI)),
            layer_mask=tuple(data.get("layer_mask", DEFAULT_LAYER_MASK)),
            arcface=arcface,
            extra=dict(data.get("extra", {})),
        )


def _json_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; dataclass fields want them back as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def ffhq1024() -> ModelConfig:
    """The official e4e FFHQ encoder + StyleGAN2 FFHQ 1024 (18 W+ layers)."""
    return ModelConfig(name="ffhq1024", generator=GeneratorConfig(size=1024),
                       encoder=EncoderConfig(n_styles=18))


def ffhq256() -> ModelConfig:
    """StyleGAN2 FFHQ 256 (rosinality's 256 checkpoint) with a 14-layer e4e encoder."""
    return ModelConfig(name="ffhq256", generator=GeneratorConfig(size=256),
                       encoder=EncoderConfig(n_styles=14))


def tiny() -> ModelConfig:
    """Same architectures, about two million parameters: for tests and CI.

    64x64 synthesis gives 10 W+ layers, so the default mask (3-7) leaves real-side layers on both
    sides of it, as in the full model.
    """
    return ModelConfig(
        name="tiny",
        generator=GeneratorConfig(size=64, style_dim=64, n_mlp=2, channel_multiplier=1,
                                  channel_base=1024, channel_max=32),
        encoder=EncoderConfig(n_styles=10, style_dim=64, blocks=(1, 1, 1, 1),
                              widths=(8, 16, 32, 64), se_reduction=4),
    )


CONFIGS = {"ffhq1024": ffhq1024, "ffhq256": ffhq256, "tiny": tiny}


def tiny_arcface() -> ArcFaceConfig:
    """A small ArcFace of the same architecture, for tests."""
    return ArcFaceConfig(blocks=(1, 1, 1, 1), widths=(8, 16, 32, 64), se_reduction=4,
                         embedding_dim=64)
