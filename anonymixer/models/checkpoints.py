"""Import of the official checkpoints into one anonymixer model bundle.

Files we read (all with ``torch.load(..., weights_only=True)``: no pickled code ever runs):

- e4e ``e4e_ffhq_encode.pt`` / pSp ``psp_ffhq_encode.pt``: ``{"state_dict": {encoder.*, decoder.*},
  "latent_avg", "opts": {"encoder_type", "stylegan_size" | "output_size", "input_nc", ...}}``;
  the decoder is a rosinality StyleGAN2 generator.
- rosinality StyleGAN2 ``.pt``: ``{"g_ema", ["g", "d", "g_optim", "d_optim", "args", "latent_avg"]}``,
  or a bare ``g_ema`` state dict.
- TreB1eN ArcFace ``model_ir_se50.pth``: a plain state dict (maybe ``module.``-prefixed).

Configs come from the tensor shapes (and ``opts`` where the shapes cannot tell, e.g. e4e vs pSp),
and are named after ``configs.CONFIGS`` when they equal one. Keys are checked strictly against our
modules (built on the meta device, so a full-size check allocates nothing); any mismatch is one
``CheckpointError`` line naming the file, the layout expected, the key differences and a hint.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..digest import sha256_file
from .bundle import BUNDLE_FORMAT, ModelBundle
from .configs import CONFIGS, ArcFaceConfig, EncoderConfig, GeneratorConfig, ModelConfig

log = logging.getLogger("anonymixer.models")

PathLike = str | os.PathLike[str]
State = dict[str, Tensor]

# e4e/pSp opts["encoder_type"] -> our EncoderConfig.mode
ENCODER_TYPES = {"Encoder4Editing": "e4e", "GradualStyleEncoder": "psp"}
# rosinality computes w_avg from 4096 samples, e4e from 1e5; chunks keep the memory small.
MEAN_LATENT_SAMPLES = 100_000
MEAN_LATENT_CHUNK = 10_000
SHOWN_KEYS = 5

LAYOUTS = {
    "e4e": "an e4e/pSp checkpoint (state_dict with encoder.* and decoder.* keys, latent_avg, opts)",
    "stylegan2": "a rosinality StyleGAN2 checkpoint (g_ema state dict)",
    "arcface": "a TreB1eN ArcFace IR-SE50 state dict (input_layer.*, body.*, output_layer.*)",
}
HINTS = {
    "e4e": "this looks like an e4e/pSp checkpoint; pass it with --e4e or --psp",
    "stylegan2": "this looks like a rosinality StyleGAN2 file; pass it with --stylegan2",
    "arcface": "this looks like an ArcFace IR-SE50 state dict; pass it with --arcface",
    "bundle": "this is already an anonymixer bundle: use it directly (e.g. --model FILE)",
}


# ---------------------------------------------------------------------------------------------
# Public API


def import_e4e(path: PathLike, *, mode: str | None = None,
               config: ModelConfig | None = None) -> ModelBundle:
    """An e4e or pSp checkpoint -> bundle with encoder (``latent_avg`` filled) and generator.

    ``opts["encoder_type"]`` decides e4e vs pSp (the key sets are identical); ``mode`` (``"e4e"``
    or ``"psp"``, what the user said) is used only when the file has no opts. ``config`` overrides
    the config inferred from the shapes (it must still match them).
    """
    ckpt = _read(path, "e4e")
    state: Mapping[str, Any] = ckpt["state_dict"]
    opts = _opts(ckpt)
    mode = _encoder_mode(path, opts, mode)
    encoder_official = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    decoder_official = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    others = sorted(k for k in state if not k.startswith(("encoder.", "decoder.")))
    if others:
        _fail(path, f"not {LAYOUTS['e4e']}: state_dict has {len(others)} keys outside encoder.* and "
              f"decoder.* (e.g. {', '.join(others[:SHOWN_KEYS])})")
    input_nc = _opt(opts, "input_nc", None)
    stem = encoder_official.get("input_layer.0.weight")
    channels = int(stem.shape[1]) if isinstance(stem, Tensor) and stem.dim() == 4 else input_nc
    if channels not in (None, 3) or input_nc not in (None, 3):
        _fail(path, f"is a pSp model for {channels or input_nc}-channel inputs (sketches or "
              "segmentation maps), not for face photos; use an e4e or pSp FFHQ face encoder")

    encoder_cfg = dataclasses.replace(config.e4e_encoder if config else infer_encoder_config(encoder_official),
                                      mode=mode)
    encoder_module = _encoder_module(encoder_cfg)
    encoder = _check(path, "e4e", encoder_official, encoder_module, skip={"latent_avg"}, prefix="encoder.")

    generator: State | None = None
    generator_cfg = config.stylegan2_generator if config else None
    if decoder_official:
        generator_cfg = generator_cfg or infer_generator_config(decoder_official)
        generator = _generator_state(path, "e4e", decoder_official, generator_cfg,
                                     ckpt.get("latent_avg"), prefix="decoder.")
        size = _opt(opts, "stylegan_size", _opt(opts, "output_size", None))
        if size is not None and int(size) != generator_cfg.size:
            _fail(path, f"opts say a {size}x{size} StyleGAN2 but the decoder weights are "
                  f"{generator_cfg.size}x{generator_cfg.size}; the file is inconsistent")
    elif generator_cfg is None:  # an encoder without decoder: guess the standard generator
        generator_cfg = GeneratorConfig(size=2 ** ((encoder_cfg.n_styles + 2) // 2),
                                        style_dim=encoder_cfg.style_dim)
    if encoder_cfg.n_styles != generator_cfg.n_latent or encoder_cfg.style_dim != generator_cfg.style_dim:
        _fail(path, f"the encoder predicts {encoder_cfg.n_styles} x {encoder_cfg.style_dim} W+ codes but "
              f"its decoder takes {generator_cfg.n_latent} x {generator_cfg.style_dim}")

    encoder["latent_avg"] = _encoder_latent_avg(path, ckpt, opts, encoder_cfg, generator)
    encoder = _in_module_order(encoder_module, encoder)
    model_config = config or _named_config(generator_cfg, encoder_cfg)
    return ModelBundle(config=model_config, encoder=encoder, generator=generator,
                       sources=[_source(mode, path)])


def import_stylegan2(path: PathLike, *, config: GeneratorConfig | None = None) -> ModelBundle:
    """A rosinality StyleGAN2 checkpoint (``g_ema``) -> bundle with a generator only.

    ``w_avg`` is the file's ``latent_avg`` (written by rosinality's convert_weight.py) if present,
    else the mean of ``MEAN_LATENT_SAMPLES`` mapped z. ``config`` overrides the inferred config.
    """
    ckpt = _read(path, "stylegan2")
    official = ckpt["g_ema"] if "g_ema" in ckpt else ckpt
    generator_cfg = config or infer_generator_config(official)
    generator = _generator_state(path, "stylegan2", official, generator_cfg, ckpt.get("latent_avg"),
                                 prefix="g_ema." if "g_ema" in ckpt else "")
    return ModelBundle(config=_named_config(generator_cfg, None), encoder=None, generator=generator,
                       sources=[_source("stylegan2", path)])


def import_arcface(path: PathLike, *, config: ArcFaceConfig | None = None) -> tuple[State, ArcFaceConfig]:
    """A TreB1eN ArcFace state dict -> (our ArcFace state dict, its config). ``module.`` is stripped."""
    from .arcface import ArcFace

    ckpt = _read(path, "arcface")
    official = _strip_module_prefix(ckpt)
    cfg = config or infer_arcface_config(official)
    state = _check(path, "arcface", official, _meta(lambda: ArcFace(cfg)))
    return state, cfg


def import_bundle(e4e: PathLike | None = None, psp: PathLike | None = None,
                  stylegan2: PathLike | None = None, arcface: PathLike | None = None, *,
                  config: ModelConfig | None = None) -> ModelBundle:
    """One bundle from official files: an encoder (``e4e`` or ``psp``), a generator, an ArcFace.

    A separate ``stylegan2`` file replaces the e4e/pSp decoder; it must take the same W+ codes
    (``n_latent`` x ``style_dim``). ``config`` is passed on to the importers (tests use tiny models).
    """
    if e4e is not None and psp is not None:
        raise CheckpointError("pass one encoder: --e4e or --psp, not both")
    if e4e is None and psp is None and stylegan2 is None:
        raise CheckpointError("nothing to import: pass --e4e or --psp (encoder and decoder) and/or "
                              "--stylegan2 (generator); --arcface alone makes no model")
    bundle: ModelBundle | None = None
    encoder_path = e4e if e4e is not None else psp
    if encoder_path is not None:
        bundle = import_e4e(encoder_path, mode="e4e" if e4e is not None else "psp", config=config)
    if stylegan2 is not None:
        gan = import_stylegan2(stylegan2, config=config.stylegan2_generator if config else None)
        if bundle is None:
            bundle = gan
            if config:
                bundle.config = config
        else:
            enc = bundle.config.e4e_encoder
            gen = gan.config.stylegan2_generator
            if (enc.n_styles, enc.style_dim) != (gen.n_latent, gen.style_dim):
                raise CheckpointError(
                    f"{stylegan2}: this StyleGAN2 takes {gen.n_latent} x {gen.style_dim} W+ codes "
                    f"({gen.size}x{gen.size}) but the encoder in {encoder_path} predicts "
                    f"{enc.n_styles} x {enc.style_dim}; use a generator of the encoder's resolution")
            bundle.generator = gan.generator
            bundle.config = config or _named_config(gen, enc)
            bundle.sources += gan.sources
    assert bundle is not None
    if arcface is not None:
        bundle.arcface, arcface_cfg = import_arcface(arcface, config=config.arcface if config else None)
        bundle.config = dataclasses.replace(bundle.config, arcface=arcface_cfg)
        bundle.sources.append(_source("arcface", arcface))
    return bundle


def summary_lines(bundle: ModelBundle) -> list[str]:
    """Human-readable lines: config, networks with parameter counts, sources with a sha256 prefix."""
    cfg = bundle.config
    gen = cfg.stylegan2_generator
    lines = [f"config: {cfg.name} (StyleGAN2 {gen.size}x{gen.size}, {gen.n_latent} W+ layers x "
             f"{gen.style_dim})"]
    builders: dict[str, Callable[[], nn.Module]] = {
        "encoder": lambda: _encoder_module(cfg.e4e_encoder),
        "generator": lambda: _generator_module(cfg.stylegan2_generator),
    }
    if cfg.arcface is not None:
        from .arcface import ArcFace

        builders["arcface"] = lambda: _meta(lambda: ArcFace(cfg.arcface or ArcFaceConfig()))
    for name, build in builders.items():
        if getattr(bundle, name) is None:
            lines.append(f"  {name:<9}  -")
            continue
        params = sum(p.numel() for p in build().parameters())
        kind = f" ({cfg.e4e_encoder.mode})" if name == "encoder" else ""
        lines.append(f"  {name:<9}  {params / 1e6:8.2f} M parameters{kind}")
    for source in bundle.sources:
        lines.append(f"  source: {source['kind']:<9} {source['file']}  sha256 {source['sha256'][:16]}")
    return lines


# ---------------------------------------------------------------------------------------------
# Config inference from official key names and shapes


def infer_generator_config(g_ema: Mapping[str, Any]) -> GeneratorConfig:
    """GeneratorConfig of a rosinality ``g_ema`` state dict, from its shapes.

    Channel widths follow ``min(channel_max, channel_base * channel_multiplier / res)``; widths that
    fit rosinality's table (base 16384) give its ``channel_multiplier``. Missing keys fall back to
    the defaults, so that the strict check afterwards reports them.
    """
    default = GeneratorConfig()
    n_mlp = _count_matching(g_ema, r"style\.\d+\.weight")
    style_w = _shape(g_ema, "style.1.weight") or _shape(g_ema, "conv1.conv.modulation.weight")
    style_dim = style_w[1] if style_w else default.style_dim
    n_blocks = _count_indexed(g_ema, "to_rgbs.")
    log_size = n_blocks + 2 if n_blocks else default.log_size
    widths = {4: (_shape(g_ema, "input.input") or (0, default.channel_max))[1]}
    for b in range(n_blocks):
        w = _shape(g_ema, f"convs.{2 * b}.conv.weight")
        if w:
            widths[2 ** (b + 3)] = w[1]
    channel_max = max(widths.values())
    products = {c * res for res, c in widths.items() if c < channel_max}
    channel_base, multiplier = default.channel_base, default.channel_multiplier
    if len(products) == 1:
        (product,) = products
        if product % default.channel_base == 0:
            multiplier = product // default.channel_base
        else:
            channel_base, multiplier = product, 1
    return GeneratorConfig(size=2 ** log_size, style_dim=style_dim, n_mlp=n_mlp or default.n_mlp,
                           channel_multiplier=multiplier, channel_base=channel_base,
                           channel_max=channel_max)


def infer_encoder_config(encoder: Mapping[str, Any]) -> EncoderConfig:
    """EncoderConfig of an e4e/pSp ``encoder.*`` state dict (prefix stripped), from its shapes.

    Head ``i`` of a feature map of side s has log2(s) convs: the coarse side gives ``input_size``
    (s << number of stages) and the changes of side give ``coarse_ind`` and ``middle_ind``.
    """
    default = EncoderConfig()
    blocks, widths, reduction = _irse_layout(encoder, default.blocks, default.widths, default.se_reduction)
    n_styles = _count_indexed(encoder, "styles.") or default.n_styles
    linear = _shape(encoder, "styles.0.linear.weight")
    sides = [2 ** _count_matching(encoder, rf"styles\.{i}\.convs\.\d+\.weight") for i in range(n_styles)]
    coarse = sides[0]
    coarse_ind = next((i for i, s in enumerate(sides) if s != coarse), n_styles)
    middle_ind = next((i for i, s in enumerate(sides) if s not in (coarse, 2 * coarse)), n_styles)
    return EncoderConfig(n_styles=n_styles, style_dim=linear[0] if linear else default.style_dim,
                         input_size=coarse << len(blocks) if coarse > 1 else default.input_size,
                         blocks=blocks, widths=widths, se_reduction=reduction,
                         coarse_ind=max(coarse_ind, 1), middle_ind=max(middle_ind, coarse_ind, 1))


def infer_arcface_config(state: Mapping[str, Any]) -> ArcFaceConfig:
    """ArcFaceConfig of a TreB1eN IR-SE state dict: input side from the embedding Linear's width."""
    default = ArcFaceConfig()
    blocks, widths, reduction = _irse_layout(state, default.blocks, default.widths, default.se_reduction)
    linear = _shape(state, "output_layer.3.weight")
    input_size, embedding_dim = default.input_size, default.embedding_dim
    if linear:
        embedding_dim = linear[0]
        side = math.isqrt(linear[1] // widths[-1])
        if side * side * widths[-1] == linear[1]:
            input_size = side << len(blocks)
    return ArcFaceConfig(input_size=input_size, blocks=blocks, widths=widths, se_reduction=reduction,
                         embedding_dim=embedding_dim)


def _irse_layout(state: Mapping[str, Any], blocks: tuple[int, ...], widths: tuple[int, ...],
                 reduction: int) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(blocks, widths, SE reduction) of an IR-SE body: a stage starts where the width changes."""
    n_units = _count_indexed(state, "body.")
    depths = [_shape(state, f"body.{i}.res_layer.1.weight") for i in range(n_units)]
    if not n_units or not all(depths):
        return blocks, widths, reduction
    stage_blocks: list[int] = []
    stage_widths: list[int] = []
    for depth in (d[0] for d in depths if d):
        if stage_widths and stage_widths[-1] == depth:
            stage_blocks[-1] += 1
        else:
            stage_blocks.append(1)
            stage_widths.append(depth)
    fc1 = _shape(state, "body.0.res_layer.5.fc1.weight")
    if fc1 and fc1[0]:
        reduction = stage_widths[0] // fc1[0]
    return tuple(stage_blocks), tuple(stage_widths), reduction


def _named_config(generator: GeneratorConfig, encoder: EncoderConfig | None) -> ModelConfig:
    """The named config (ffhq1024, ffhq256, tiny) with these networks, else a ``stylegan2-<size>`` one."""
    for name, factory in CONFIGS.items():
        named = factory()
        if named.generator == generator and (
                encoder is None or dataclasses.replace(named.e4e_encoder, mode=encoder.mode) == encoder):
            return dataclasses.replace(named, encoder=encoder or named.encoder)
    encoder = encoder or EncoderConfig(n_styles=generator.n_latent, style_dim=generator.style_dim)
    return ModelConfig(name=f"stylegan2-{generator.size}", generator=generator, encoder=encoder)


# ---------------------------------------------------------------------------------------------
# Reading files


def _read(path: PathLike, expected: str) -> dict[str, Any]:
    """``torch.load`` with one-line errors for missing, foreign, truncated and wrong-layout files."""
    path = Path(path)
    if not path.is_file():
        _fail(path, f"no such file (expected {LAYOUTS[expected]})")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        _fail(path, "is empty (an interrupted download?)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        _fail(path, _load_failure(head, exc))
    if not isinstance(ckpt, dict):
        _fail(path, f"holds {type(ckpt).__name__}, not {LAYOUTS[expected]}")
    kind = _guess_kind(ckpt)
    if kind != expected:
        found = f"top-level keys {_some(sorted(map(str, ckpt)))}"
        _fail(path, f"not {LAYOUTS[expected]} ({found}); " + HINTS.get(kind or "", _layout_help(expected)))
    return ckpt


def _load_failure(head: bytes, exc: Exception) -> str:
    text = str(exc)
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if pickled:
        name = pickled.group(1)
        hint = " (an NVIDIA .pkl: convert it with rosinality's convert_weight.py first)" \
            if name.startswith(("dnnlib", "torch_utils")) else ""
        return (f"contains a pickled Python object ({name}) that anonymixer will not unpickle, since "
                f"unpickling can run code{hint}; re-save the weights with torch.save(state_dict)")
    if head.startswith(b"PK\x03\x04"):
        if "central directory" in text or isinstance(exc, EOFError):
            return "is truncated or corrupt: its zip archive cannot be read (an interrupted download?)"
        return f"is a zip archive but not a readable PyTorch checkpoint ({type(exc).__name__})"
    if head.startswith(b"\x80\x02\x8a"):  # torch's legacy (pre-1.6) format starts with its magic number
        return "is truncated or corrupt: the legacy PyTorch file ends early (an interrupted download?)"
    if head.startswith(b"\x80"):
        return ("is a plain Python pickle, not a torch.save file (NVIDIA .pkl StyleGAN2 files must be "
                "converted with rosinality's convert_weight.py first)")
    return "is not a PyTorch checkpoint (unrecognised file header)"


def _guess_kind(ckpt: Mapping[str, Any]) -> str | None:
    """What a loaded dict looks like: e4e, stylegan2, arcface, bundle or None."""
    if ckpt.get("format") == BUNDLE_FORMAT:
        return "bundle"
    if isinstance(ckpt.get("g_ema"), Mapping) or {"style.1.weight", "input.input"} <= ckpt.keys():
        return "stylegan2"
    state = ckpt.get("state_dict")
    if isinstance(state, Mapping) and any(str(k).startswith("encoder.") for k in state):
        return "e4e"
    keys = _strip_module_prefix(ckpt).keys()
    if "output_layer.3.weight" in keys and "input_layer.0.weight" in keys:
        return "arcface"
    return None


def _layout_help(expected: str) -> str:
    return {"e4e": "expected the e4e_ffhq_encode.pt / psp_ffhq_encode.pt layout",
            "stylegan2": "expected a .pt from rosinality's train.py or convert_weight.py",
            "arcface": "expected TreB1eN's model_ir_se50.pth"}[expected]


def _opts(ckpt: Mapping[str, Any]) -> Mapping[str, Any]:
    opts = ckpt.get("opts")
    if isinstance(opts, argparse.Namespace):
        return vars(opts)
    return opts if isinstance(opts, Mapping) else {}


def _opt(opts: Mapping[str, Any], name: str, default: Any) -> Any:
    value = opts.get(name, default)
    return default if value is None else value


def _encoder_mode(path: PathLike, opts: Mapping[str, Any], requested: str | None) -> str:
    encoder_type = opts.get("encoder_type")
    if encoder_type is None:
        return requested or "e4e"
    if encoder_type not in ENCODER_TYPES:
        _fail(path, f"encoder type {encoder_type!r} is not supported; anonymixer imports "
              + " and ".join(f"{k} ({v})" for k, v in ENCODER_TYPES.items()))
    mode = ENCODER_TYPES[encoder_type]
    if requested and requested != mode:
        log.warning("%s: the file says %s (%s), not %s; importing it as %s",
                    path, encoder_type, mode, requested, mode)
    return mode


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop DataParallel's ``module.`` prefix when every key carries it."""
    keys = [str(k) for k in state]
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


# ---------------------------------------------------------------------------------------------
# Strict checks against our modules


def _meta(build: Callable[[], nn.Module]) -> nn.Module:
    """A module on the meta device: names and shapes without memory or random init."""
    with torch.device("meta"):
        return build()


def _encoder_module(cfg: EncoderConfig) -> nn.Module:
    from .encoder import Encoder

    return _meta(lambda: Encoder(cfg))


def _generator_module(cfg: GeneratorConfig) -> nn.Module:
    from .stylegan2 import Generator

    return _meta(lambda: Generator(cfg))


def _check(path: PathLike, expected: str, official: Mapping[str, Any], module: nn.Module, *,
           rename: Callable[[str], str] = str, unrename: Callable[[str], str] = str, prefix: str = "",
           skip: Collection[str] = ()) -> State:
    """Our state dict from ``official`` (keys renamed by ``rename``), checked key by key, shape by shape.

    ``skip`` names our own keys that the file does not have (filled by the caller). Messages name
    keys as the file does: ``prefix`` + official name (``unrename`` inverts ``rename``).
    Floats become float32.
    """
    target = {k: v for k, v in module.state_dict().items() if k not in skip}
    ours = {rename(str(k)): v for k, v in official.items()}
    names = {rename(str(k)): prefix + str(k) for k in official}
    # Files saved before PyTorch 0.4.1 have no BatchNorm counters; torch itself loads them as 0.
    for key in target:
        if key.endswith(".num_batches_tracked") and key not in ours:
            ours[key] = torch.tensor(0, dtype=torch.long)
    missing = [prefix + unrename(k) for k in target if k not in ours]
    unexpected = [names[k] for k in ours if k not in target]
    wrong = [f"{names[k]} {_fmt(ours[k])} vs expected {tuple(v.shape)}" for k, v in target.items()
             if k in ours and (not isinstance(ours[k], Tensor) or ours[k].shape != v.shape)]
    if missing or unexpected or wrong:
        problems = [_listing(missing, "missing", "key"), _listing(unexpected, "unexpected", "key"),
                    _listing(wrong, "", "shape mismatch", plural="shape mismatches")]
        message = f"does not match {LAYOUTS[expected]}: " + ", ".join(p for p in problems if p)
        hint = _mismatch_hint(missing, unexpected)
        _fail(path, message + (f"; {hint}" if hint else ""))
    return {k: ours[k].float() if ours[k].is_floating_point() else ours[k] for k in target}


def _in_module_order(module: nn.Module, state: State) -> State:
    """``state`` with its keys in ``module.state_dict()`` order (bundles read like the module)."""
    return {k: state[k] for k in module.state_dict()}


def _generator_state(path: PathLike, expected: str, official: Mapping[str, Any], cfg: GeneratorConfig,
                     latent_avg: Any, prefix: str) -> State:
    """Our Generator state dict from rosinality keys, with ``w_avg`` from ``latent_avg`` or sampling."""
    from .stylegan2 import rosinality_key

    module = _generator_module(cfg)
    state = _check(path, expected, official, module, rename=rosinality_key, unrename=_rosinality_name,
                   prefix=prefix, skip={"w_avg"})
    if isinstance(latent_avg, Tensor) and latent_avg.numel() and latent_avg.shape[-1] == cfg.style_dim:
        # e4e stores w_avg repeated per layer, (18, 512): take the row itself when all are equal.
        rows = latent_avg.detach().float().reshape(-1, cfg.style_dim)
        state["w_avg"] = (rows[0] if bool((rows == rows[0]).all()) else rows.mean(dim=0)).clone()
    else:
        log.info("%s: no latent_avg; estimating w_avg from %d samples", path, MEAN_LATENT_SAMPLES)
        state["w_avg"] = estimate_w_avg(cfg, state)
    return _in_module_order(module, state)


def estimate_w_avg(cfg: GeneratorConfig, state: State, n: int = MEAN_LATENT_SAMPLES) -> Tensor:
    """Mean mapped ``w`` of ``n`` seeded z (chunk ``c`` uses seed ``c``): ``(style_dim,) float32``."""
    from .stylegan2 import Generator

    with torch.random.fork_rng(devices=[]):  # construction draws random weights: keep the caller's RNG
        generator = Generator(cfg)
    generator.load_state_dict({**state, "w_avg": torch.zeros(cfg.style_dim)}, strict=True)
    chunks = [min(MEAN_LATENT_CHUNK, n - start) for start in range(0, n, MEAN_LATENT_CHUNK)]
    total = torch.stack([generator.mean_latent(size, seed=c) * size for c, size in enumerate(chunks)])
    return (total.sum(dim=0) / n).float()


def _encoder_latent_avg(path: PathLike, ckpt: Mapping[str, Any], opts: Mapping[str, Any],
                        cfg: EncoderConfig, generator: State | None) -> Tensor:
    """The encoder's ``latent_avg`` buffer, ``(n_styles, style_dim)``: the file's, broadcast."""
    shape = (cfg.n_styles, cfg.style_dim)
    if not _opt(opts, "start_from_latent_avg", True):
        return torch.zeros(shape)
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is None and generator is not None:
        log.warning("%s: no latent_avg; using the decoder's mean w", path)
        latent_avg = generator["w_avg"]
    if not isinstance(latent_avg, Tensor):
        _fail(path, "has no latent_avg, which e4e/pSp add to every code; the checkpoint is incomplete")
    rows = latent_avg.detach().float().reshape(-1, latent_avg.shape[-1]) if latent_avg.dim() else latent_avg
    if rows.dim() != 2 or rows.shape[1] != cfg.style_dim or rows.shape[0] not in (1, cfg.n_styles):
        _fail(path, f"latent_avg has shape {tuple(latent_avg.shape)}; expected ({cfg.style_dim},), "
              f"(1, {cfg.style_dim}) or {shape}")
    return rows.expand(shape).clone()


def _rosinality_name(ours: str) -> str:
    """Inverse of ``stylegan2.rosinality_key``: our key -> rosinality's ``g_ema`` key."""
    for prefix in ("mapping.", "synthesis."):
        if ours.startswith(prefix):
            return ours[len(prefix):]
    return ours


def _mismatch_hint(missing: list[str], unexpected: list[str]) -> str:
    if unexpected and all(k.startswith("module.") for k in unexpected):
        return "the keys carry a 'module.' prefix (saved from DataParallel); strip it and re-save"
    if missing and all(".noises." in f".{k}" for k in missing):
        return "an old rosinality file without noise buffers: re-save it with a current model.py"
    if missing and all(".fc1." in k or ".fc2." in k for k in missing):
        return "the backbone has no squeeze-excitation units (IR, not IR-SE); only IR-SE50 is supported"
    return ""


# ---------------------------------------------------------------------------------------------
# Small helpers


def _source(kind: str, path: PathLike) -> dict[str, str]:
    return {"kind": kind, "file": Path(path).name, "sha256": sha256_file(path)}


def _fail(path: PathLike, message: str) -> NoReturn:
    raise CheckpointError(" ".join(f"{path}: {message}".split()))


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) and value.dim() else None


def _count_matching(state: Mapping[str, Any], pattern: str) -> int:
    """How many keys match the regular expression ``pattern`` in full."""
    compiled = re.compile(pattern)
    return sum(1 for k in state if compiled.fullmatch(str(k)))


def _count_indexed(state: Mapping[str, Any], prefix: str) -> int:
    """1 + the largest ``i`` in keys ``prefix{i}.*``; 0 if there are none."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = [int(m.group(1)) for k in state if (m := pattern.match(str(k)))]
    return max(indices) + 1 if indices else 0


def _fmt(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_KEYS])
    return shown + (f", ... ({len(items)} in all)" if len(items) > SHOWN_KEYS else "") if items else "none"


def _listing(items: list[str], adjective: str, noun: str, plural: str | None = None) -> str:
    if not items:
        return ""
    word = noun if len(items) == 1 else plural or noun + "s"
    return f"{adjective + ' ' if adjective else ''}{len(items)} {word} (e.g. {', '.join(items[:SHOWN_KEYS])})"
