"""The model bundle: one file holding everything the pipeline needs, and model SPEC resolution.

A bundle is a ``torch.save`` dict read back with ``weights_only=True`` (no pickled code runs):

    format: "anonymixer-bundle", version: 2,
    config: ModelConfig.to_dict(),
    encoder: state dict of models.encoder.Encoder (latent_avg included), or None,
    generator: state dict of models.stylegan2.Generator (w_avg included), or None,
    mixer: state dict of a learned Mixer, or None,
    arcface: state dict of models.arcface.ArcFace (config.arcface), or None,
    code_stats: {"mean", "eigenvalues", "eigenvectors"} float64 tensors (anonymixer.codestats),
                measured from the mapping network when the bundle is made, or None (measured on use),
    sources: [{"kind", "file", "sha256"}] of the official files it was imported from,
    random_seed: int for seeded random weights, else None,
    digest: bundle_digest() of the above (config and every tensor), checked by load_bundle.

Version 1 had no digest; it is refused with the command that re-creates the file (there were no
version-1 bundles outside this repository's own runs).

A model SPEC is a bundle path, ``faces64`` (the packaged DCGAN + our trained encoder: real
weights that run anywhere) or ``random:tiny|ffhq256|ffhq1024[@seed]``.

Only this module looks at ``config.family`` to pick the networks; everything above speaks in codes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..atomic import replacing_file
from ..codestats import CodeStats, from_samples, identity
from ..errors import BundleIntegrityError, CheckpointError, ExportError, ModelSpecError, ResolutionError
from .configs import CONFIGS, CodeEncoderConfig, DCGANConfig, ModelConfig, check_output_resolution, faces64

if TYPE_CHECKING:
    from torch import nn

    from .arcface import ArcFace

log = logging.getLogger("anonymixer.models")
M = TypeVar("M", bound=torch.nn.Module)

BUNDLE_FORMAT = "anonymixer-bundle"
BUNDLE_VERSION = 2
NETWORKS = ("encoder", "generator", "mixer", "arcface")
TENSOR_TABLES = (*NETWORKS, "code_stats")   # every table of tensors a bundle holds (all in its digest)
RANDOM_WEIGHTS_WARNING = "random weights: for pipeline and latency checks only"


@dataclass
class ModelBundle:
    """Config and weights of encoder + generator (+ learned mixer), with their provenance."""

    config: ModelConfig
    encoder: dict[str, torch.Tensor] | None
    generator: dict[str, torch.Tensor] | None
    mixer: dict[str, torch.Tensor] | None = None
    arcface: dict[str, torch.Tensor] | None = None
    sources: list[dict[str, str]] = field(default_factory=list)
    random_seed: int | None = None
    code_stats: dict[str, torch.Tensor] | None = None
    path: Path | None = None          # the file it was read from (for messages); not saved

    @property
    def is_random(self) -> bool:
        return self.random_seed is not None

    @property
    def description(self) -> str:
        if self.is_random:
            return f"random:{self.config.name}@{self.random_seed} ({RANDOM_WEIGHTS_WARNING})"
        names = ", ".join(s.get("file", "?") for s in self.sources) or "no recorded sources"
        return f"{self.config.name} from {names}"

    def build_encoder(self) -> nn.Module:
        """The encoder in eval mode: ``face (B, 3, S, S) -> w_real (B, L, D)`` (e4e/pSp, or faces64's CNN)."""
        config = self.config.encoder
        if isinstance(config, CodeEncoderConfig):
            from .code_encoder import CodeEncoder

            code_config = config   # narrowed for the lambda
            return self.load_module("encoder", lambda: CodeEncoder(code_config), self._require("encoder", "faces64")).eval()
        from .encoder import Encoder

        e4e_config = config
        return self.load_module("encoder", lambda: Encoder(e4e_config), self._require("encoder", "--e4e or --psp")).eval()

    def build_generator(self, output_resolution: int | None = None) -> nn.Module:
        """The generator in eval mode: ``w (B, L, D) -> image (B, 3, R, R)``, with ``mapping``, ``w_avg``
        and ``output_resolution`` attributes; StyleGAN2 may stop early at ``output_resolution``."""
        cfg = self.config
        if isinstance(cfg.generator, DCGANConfig):
            from .dcgan import build_faces64_generator

            if output_resolution not in (None, cfg.generator.size):
                raise ResolutionError(f"the {cfg.name} generator draws {cfg.generator.size} px only, "
                                      f"not {output_resolution}; drop --resolution")
            return build_faces64_generator(cfg.generator, self._require("generator", "faces64"))
        from .stylegan2 import Generator

        stylegan2 = cfg.generator   # narrowed for the lambda
        state = self._require("generator", "--e4e, --psp or --stylegan2")
        if output_resolution is not None:  # a bad --resolution is the user's error, not the bundle's
            check_output_resolution(int(output_resolution), stylegan2.size)
        return self.load_module("generator", lambda: Generator(stylegan2, output_resolution=output_resolution),
                                state).eval()

    def build_arcface(self) -> ArcFace:
        """The ArcFace IR-SE model in eval mode: ``(B, 3, 112, 112) -> (B, 512)`` unit vectors."""
        from .arcface import ArcFace
        from .configs import ArcFaceConfig

        state = self._require("arcface", "--arcface")
        return self.load_module("arcface", lambda: ArcFace(self.config.arcface or ArcFaceConfig()), state).eval()

    @property
    def source(self) -> str:
        """How messages name this bundle: its file, or its description."""
        return str(self.path) if self.path is not None else f"model {self.description}"

    def reimport_command(self) -> str:
        """The ``anonymixer import`` command that re-creates this bundle from its recorded sources."""
        flags = " ".join(f"--{s.get('kind', '?')} {s.get('file', 'FILE')}" for s in self.sources
                         if s.get("kind") in ("e4e", "psp", "stylegan2", "arcface"))
        return f"anonymixer import {flags or '--e4e FILE'} --out {self.path or 'BUNDLE'} --force"

    def load_module(self, network: str, build: Callable[[], M], state: dict[str, torch.Tensor]) -> M:
        """``build()`` with ``state`` loaded strictly; a one-line ``CheckpointError`` when they disagree."""
        try:
            module = build()
        except (ValueError, TypeError, KeyError, ZeroDivisionError, OverflowError, RuntimeError) as exc:
            raise CheckpointError(f"{self.source}: bad {network} config ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                                  f"re-create it with `{self.reimport_command()}`") from None
        problem = state_mismatch(module.state_dict(), state)
        if problem:
            raise CheckpointError(f"{self.source}: {network} weights do not match the config "
                                  f"({problem}); re-create it with `{self.reimport_command()}`")
        module.load_state_dict(state, strict=True)
        return module

    def _require(self, network: str, flag: str) -> dict[str, torch.Tensor]:
        state = getattr(self, network)
        if state is None:
            raise CheckpointError(f"model {self.description} has no {network}; "
                                  f"add one with `anonymixer import {flag} FILE`")
        return state


def state_mismatch(expected: dict[str, torch.Tensor], state: dict[str, Any]) -> str:
    """What differs between a module's state dict and ``state`` (names and shapes), or ``""``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__} "
             f"vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)]
    parts = [f"{len(items)} {noun} (e.g. {items[0]})" for items, noun in
             ((missing, "missing"), (unexpected, "unexpected"), (wrong, "with another shape")) if items]
    return ", ".join(parts)


def bundle_digest(bundle: ModelBundle) -> str:
    """Hex SHA-256 over the config (canonical JSON) and every tensor of every network and of the
    code statistics.

    Per tensor, in sorted ``network.name`` order: the name, dtype, shape and byte count, then the
    raw bytes (little-endian on every platform we run on). Same config and weights, same digest,
    whatever the file's layout; it also identifies ``random:`` models, which have no file.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(bundle.config.to_dict(), sort_keys=True, separators=(",", ":")).encode())
    for network in TENSOR_TABLES:
        state = getattr(bundle, network)
        digest.update(f"\0{network}:{'none' if state is None else len(state)}\0".encode())
        for name in sorted(state or {}):
            tensor = state[name].detach().cpu().contiguous()
            data = tensor.reshape(-1).view(torch.uint8).numpy()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:{data.nbytes}\0".encode())
            digest.update(data.tobytes())
    return digest.hexdigest()


def random_bundle(name: str, seed: int = 0) -> ModelBundle:
    """Seeded random weights of a named config (``tiny``, ``ffhq256``, ``ffhq1024``).

    The encoder's ``latent_avg`` is the generator's ``w_avg`` on every layer, as in e4e.
    """
    from .encoder import make_encoder
    from .stylegan2 import make_generator

    if name not in CONFIGS:
        raise ModelSpecError(f"unknown config {name!r} in model spec: choose one of {', '.join(CONFIGS)}")
    config = CONFIGS[name]()
    generator = make_generator(config.stylegan2_generator, seed=seed)
    encoder = make_encoder(config.e4e_encoder, seed=seed + 1)
    w_avg = generator.w_avg.detach().reshape(1, -1)
    with torch.no_grad():
        encoder.latent_avg.copy_(w_avg.expand(config.e4e_encoder.n_styles, -1))
    return ModelBundle(config=config, encoder=encoder.state_dict(), generator=generator.state_dict(),
                       random_seed=seed, code_stats=stats_tensors(measure_code_stats(generator, seed)))


CODE_STATS_SAMPLES_PER_DIM = 4


def measure_code_stats(generator: torch.nn.Module, seed: int = 0) -> CodeStats:
    """``(mu, C)`` of the mapping network's codes: ``4 D`` (at least 1024) seeded ``z ~ N(0, I)``
    mapped, mean and floored eigendecomposition (``codestats.from_samples``). A mapping that is
    the identity (faces64: the code is ``z``) has exactly ``mu = 0, C = I``."""
    dim = int(generator.get_buffer("w_avg").shape[-1])
    count = max(1024, CODE_STATS_SAMPLES_PER_DIM * dim)
    z = torch.randn(count, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    with torch.no_grad():
        codes = generator.get_submodule("mapping")(z)
    if torch.equal(codes, z):
        return identity(dim)
    return from_samples(codes.double().numpy())


def stats_tensors(stats: CodeStats) -> dict[str, torch.Tensor]:
    """Code statistics as the bundle stores them (float64 tensors: ``weights_only`` loads them)."""
    return {name: torch.from_numpy(array.copy()) for name, array in stats.to_arrays().items()}


def bundle_code_stats(bundle: ModelBundle, generator: torch.nn.Module) -> CodeStats:
    """The bundle's code statistics; measured now (and kept in ``bundle``) when it has none."""
    if bundle.code_stats is None:
        log.info("model %s has no code statistics: measuring them from its mapping network", bundle.description)
        bundle.code_stats = stats_tensors(measure_code_stats(generator))
    try:
        return CodeStats.from_arrays({k: v.numpy() for k, v in bundle.code_stats.items()}, bundle.description)
    except ExportError as exc:
        raise CheckpointError(f"{exc}; re-run `anonymixer import`") from None


FACES64_SPEC = "faces64"
# Our trained faces64 encoder, shipped in the package (see anonymixer/models/weights/README.md for
# the command that made it, its log and metrics).
FACES64_ENCODER_FILE = Path(__file__).parent / "weights" / "faces64_encoder.pt"
FACES64_ENCODER_SHA256 = "52a001321429cbe15d8d3174d8522feb5029c80ea41058e36ef652485746996a"
FACES64_LICENCE = ("faces64 generator: DCGAN from gan-face-generate 1.1.1, trained on DigiFace-1M "
                   "(non-commercial research licence)")


def faces64_bundle(encoder_weights: str | os.PathLike[str] | None = None) -> ModelBundle:
    """The faces64 model: the packaged DCGAN generator + our encoder (``encoder_weights``: a state-dict
    file, default the one shipped in this package). Real weights, 64-px faces."""
    from ..digest import sha256_file
    from .dcgan import DCGAN_FILE, DCGAN_PACKAGE, DCGAN_SHA256, load_dcgan_state

    path = Path(encoder_weights) if encoder_weights is not None else FACES64_ENCODER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: faces64 encoder weights not found; train them with "
                              "`python -m anonymixer.train.faces64` (or reinstall anonymixer)")
    digest = sha256_file(path)
    if encoder_weights is None and digest != FACES64_ENCODER_SHA256:
        raise CheckpointError(f"{path}: faces64 encoder weights do not match their published sha256 "
                              f"({digest[:12]}...); reinstall anonymixer")
    try:
        encoder = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable faces64 encoder state dict ({type(exc).__name__})") from None
    if not isinstance(encoder, dict) or not all(isinstance(v, torch.Tensor) for v in encoder.values()):
        raise CheckpointError(f"{path}: not a faces64 encoder state dict (expected a dict of tensors)")
    sources = [{"kind": "dcgan", "file": f"{DCGAN_PACKAGE}/{DCGAN_FILE}", "sha256": DCGAN_SHA256},
               {"kind": "encoder", "file": path.name, "sha256": digest}]
    config = faces64()
    return ModelBundle(config=config, encoder=encoder, generator=load_dcgan_state(), sources=sources,
                       code_stats=stats_tensors(identity(config.style_dim)))  # the code is z: mu = 0, C = I


def save_bundle(bundle: ModelBundle, path: str | os.PathLike[str]) -> None:
    """Write a bundle file atomically (``atomic.replacing_file``: same folder, fsync, rename)."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "config": bundle.config.to_dict(),
        "encoder": bundle.encoder,
        "generator": bundle.generator,
        "mixer": bundle.mixer,
        "arcface": bundle.arcface,
        "sources": bundle.sources,
        "random_seed": bundle.random_seed,
        "code_stats": bundle.code_stats,
        "digest": bundle_digest(bundle),
    }
    with replacing_file(path) as f:
        torch.save(payload, f)


def load_bundle(path: str | os.PathLike[str]) -> ModelBundle:
    """Read a bundle written by ``save_bundle``; one-line ``CheckpointError`` on anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model bundle file")
    from ..signing import check_signed

    check_signed(path)   # under a trusted key (anonymixer.signing); nothing otherwise
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable model bundle ({type(exc).__name__}); "
                              "create one with `anonymixer import`") from None
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path}: not an anonymixer model bundle; official e4e/StyleGAN2 files "
                              "must first be converted with `anonymixer import`")
    how = "re-create it with `anonymixer import`"
    if payload.get("version") == 1:
        raise CheckpointError(f"{path}: bundle format version 1 carries no digest of its weights, so it cannot be "
                              f"checked (this anonymixer reads version {BUNDLE_VERSION}); {how}")
    if payload.get("version") != BUNDLE_VERSION:
        raise CheckpointError(f"{path}: bundle format version {payload.get('version')} is not supported "
                              f"(this anonymixer reads version {BUNDLE_VERSION}); {how}")
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: bad model config in the bundle ({type(exc).__name__}: {exc}); {how}") from None
    for network in TENSOR_TABLES:
        state = payload.get(network)
        if state is not None and not (isinstance(state, dict)
                                      and all(isinstance(v, torch.Tensor) for v in state.values())):
            raise CheckpointError(f"{path}: {network} is not a table of tensors; {how}")
    bundle = ModelBundle(
        config=config,
        encoder=payload.get("encoder"),
        generator=payload.get("generator"),
        mixer=payload.get("mixer"),
        arcface=payload.get("arcface"),
        sources=list(payload.get("sources") or []),
        random_seed=payload.get("random_seed"),
        code_stats=payload.get("code_stats"),
        path=path,
    )
    how = f"re-create it with `{bundle.reimport_command()}`"
    recorded = payload.get("digest")
    if not isinstance(recorded, str):
        raise BundleIntegrityError(f"{path}: bundle has no digest of its weights, so it cannot be checked; {how}")
    if bundle_digest(bundle) != recorded:
        raise BundleIntegrityError(f"{path}: weights or config do not match the bundle's digest (damaged or "
                                   f"altered file); {how}")
    return bundle


def resolve_spec(spec: str | ModelBundle) -> ModelBundle:
    """Turn a model SPEC into a bundle: a bundle path or ``random:NAME[@seed]``."""
    if isinstance(spec, ModelBundle):
        return spec
    if spec == FACES64_SPEC:
        return faces64_bundle()
    if spec.startswith("random:"):
        name, _, seed_text = spec[len("random:"):].partition("@")
        try:
            seed = int(seed_text) if seed_text else 0
        except ValueError:
            raise ModelSpecError(f"model spec {spec!r}: seed must be an integer, as in random:tiny@3") from None
        bundle = random_bundle(name, seed)
        log.warning("model %s", bundle.description)
        return bundle
    kinds = "a bundle file written by `anonymixer import`, faces64, or random:tiny|ffhq256|ffhq1024[@seed]"
    if not spec.strip():
        raise ModelSpecError(f"--model is empty; give {kinds}")
    if not Path(spec).exists():
        raise ModelSpecError(f"model spec {spec!r}: no such bundle file; use {kinds}")
    if Path(spec).is_dir():
        raise ModelSpecError(f"--model {spec}: {_folder_kind(Path(spec))}")
    return load_bundle(spec)


def _folder_kind(folder: Path) -> str:
    """What to say when ``--model`` is given a folder: run an export folder with ``--onnx``, an engine
    folder with ``--engines``; anything else is not a model."""
    from ..export.layout import ENGINE_FOLDER, MANIFEST

    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and ENGINE_FOLDER in manifest:
        return f"is an engine folder (`anonymixer build`), not a bundle file; run it with --engines {folder}"
    if isinstance(manifest, dict) and isinstance(manifest.get("graphs"), dict):
        return f"is an export folder (`anonymixer export`), not a bundle file; run it with --onnx {folder}"
    return ("is a folder, not a model bundle file; --model takes a bundle file written by `anonymixer import`, "
            "faces64 or random:NAME (--onnx DIR runs an export folder, --engines DIR an engine folder)")
