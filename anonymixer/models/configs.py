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
class DCGANConfig:
    """The DCGAN face generator of PyTorch's tutorial: ``z (nz) -> (nc, size, size)``, ``ngf`` base width."""

    nz: int = 100
    ngf: int = 64
    nc: int = 3
    size: int = 64

    @property
    def style_dim(self) -> int:
        return self.nz

    @property
    def n_latent(self) -> int:
        return 1


@dataclass(frozen=True)
class CodeEncoderConfig:
    """faces64's encoder: a small residual CNN, aligned face ``(3, input_size, input_size)`` -> code ``(1, code_dim)``.

    ``widths``: channels of the stem and of each stride-2 stage (64 -> 32 -> 16 -> 8 -> 4 px).
    """

    input_size: int = 64
    code_dim: int = 100
    widths: tuple[int, ...] = (32, 64, 128, 192, 256)
    hidden: int = 512


FAMILIES = ("stylegan2", "faces64")
# (x, y) of the five landmarks (detect.LANDMARKS order) as fractions of the crop side, or None
# for the FFHQ quad (align.ffhq_quad), which StyleGAN2/e4e were trained on.
CropTemplate = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ModelConfig:
    """Everything the protection pipeline needs to rebuild its networks.

    ``family`` names the pair of architectures: ``stylegan2`` (e4e/pSp encoder + StyleGAN2,
    ``GeneratorConfig``/``EncoderConfig``) or ``faces64`` (``CodeEncoderConfig`` + ``DCGANConfig``).
    Only the model builders (``models.bundle``) look at it; everything above speaks in codes
    ``(B, n_latent, style_dim)`` and asks the properties below.
    """

    name: str
    generator: GeneratorConfig | DCGANConfig
    encoder: EncoderConfig | CodeEncoderConfig
    truncation_psi: float = DEFAULT_TRUNCATION_PSI
    layer_mask: tuple[int, ...] = DEFAULT_LAYER_MASK
    arcface: ArcFaceConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    family: str = "stylegan2"
    crop_template: CropTemplate | None = None

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    @property
    def style_dim(self) -> int:
        return self.generator.style_dim

    @property
    def stylegan2_generator(self) -> GeneratorConfig:
        """``generator`` of the ``stylegan2`` family (importers, StyleGAN2 builders); ValueError otherwise."""
        if not isinstance(self.generator, GeneratorConfig):
            raise ValueError(f"model {self.name} is of the {self.family} family, not StyleGAN2")
        return self.generator

    @property
    def e4e_encoder(self) -> EncoderConfig:
        """``encoder`` of the ``stylegan2`` family (e4e/pSp); ValueError otherwise."""
        if not isinstance(self.encoder, EncoderConfig):
            raise ValueError(f"model {self.name} is of the {self.family} family, not e4e/pSp")
        return self.encoder

    @property
    def input_size(self) -> int:
        """Side of the aligned face the encoder reads, in pixels."""
        return self.encoder.input_size

    @property
    def output_size(self) -> int:
        """Side of the generator's full-resolution output, in pixels."""
        return self.generator.size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        family = data.get("family", "stylegan2")
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}: this anonymixer knows {', '.join(FAMILIES)}")
        arc = data.get("arcface")
        arcface = ArcFaceConfig(**_json_fields(arc)) if arc else None
        generator: GeneratorConfig | DCGANConfig
        encoder: EncoderConfig | CodeEncoderConfig
        if family == "faces64":
            generator = DCGANConfig(**_json_fields(data["generator"]))
            encoder = CodeEncoderConfig(**_json_fields(data["encoder"]))
        else:
            generator = GeneratorConfig(**_json_fields(data["generator"]))
            encoder = EncoderConfig(**_json_fields(data["encoder"]))
        template = data.get("crop_template")
        return cls(
            name=data["name"],
            generator=generator,
            encoder=encoder,
            truncation_psi=float(data.get("truncation_psi", DEFAULT_TRUNCATION_PSI)),
            layer_mask=tuple(data.get("layer_mask", DEFAULT_LAYER_MASK)),
            arcface=arcface,
            extra=dict(data.get("extra", {})),
            family=family,
            crop_template=tuple((float(x), float(y)) for x, y in template) if template else None,
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

# Where YuNet puts the five landmarks on the packaged DCGAN's faces (median over 254 of 256
# seeded samples upscaled to 256 px, made left-right symmetric about x = 0.5), so that real faces
# are cropped the way the generator frames its own. ``python -m anonymixer.train.template``
# re-measures it; tests/test_faces64.py checks that it still holds.
FACES64_TEMPLATE: CropTemplate = ((0.3475, 0.465), (0.6525, 0.465), (0.5, 0.655), (0.3775, 0.80), (0.6225, 0.80))


def faces64() -> ModelConfig:
    """The packaged 64-px DCGAN face generator + our trained encoder: one code (L = 1, D = 100), all identity."""
    return ModelConfig(name="faces64", family="faces64", generator=DCGANConfig(), encoder=CodeEncoderConfig(),
                       truncation_psi=1.0, layer_mask=(0,), crop_template=FACES64_TEMPLATE)


def tiny_arcface() -> ArcFaceConfig:
    """A small ArcFace of the same architecture, for tests."""
    return ArcFaceConfig(blocks=(1, 1, 1, 1), widths=(8, 16, 32, 64), se_reduction=4,
                         embedding_dim=64)
