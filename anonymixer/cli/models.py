"""`import`, `export`, `calibrate` and `build`: official files to a bundle, ONNX graphs, INT8 graphs, TensorRT engines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import prepare_folder
from ..errors import AnonymixerError
from ..keymaterial import MIXER_MODES
from .common import (
    add_calibration_options,
    add_trusted_key_option,
    positive_int,
)

if TYPE_CHECKING:
    pass


def cmd_import(args: argparse.Namespace) -> int:
    from ..models.bundle import bundle_code_stats, save_bundle
    from ..models.checkpoints import import_bundle, summary_lines

    out = Path(args.out)
    if out.exists() and not args.force:
        raise AnonymixerError(f"{out} already exists; pass --force to replace it")
    bundle = import_bundle(e4e=args.e4e, psp=args.psp, stylegan2=args.stylegan2, arcface=args.arcface)
    if bundle.generator is not None:
        bundle_code_stats(bundle, bundle.build_generator())   # the mixer's (mu, C), stored in the bundle
    save_bundle(bundle, out)
    print(f"wrote model bundle {out}")
    for line in summary_lines(bundle):
        print(line)
    print(f"use it with --model {out}")
    return 0

def cmd_export(args: argparse.Namespace) -> int:
    import time

    from ..export.onnx import export_onnx
    from ..export.summary import summary
    from ..models.mixer import parse_layer_mask

    out = Path(args.out)
    if (out / "manifest.json").exists() and not args.force:
        raise AnonymixerError(f"{out} already holds an export; pass --force to replace it")
    prepare_folder(out)
    start = time.perf_counter()
    manifest = export_onnx(args.model, out, precisions=args.precision.split(","), output_resolution=args.resolution,
                           layer_mask=parse_layer_mask(args.layer_mask) if args.layer_mask else None,
                           mixer_mode=args.mixer, project_rank=args.rank, radius_guard=not args.no_radius_guard,
                           opset=args.opset, calib=args.calib, calib_synthetic=args.calib_synthetic,
                           calib_method=args.calib_method, keep_fp=args.keep_fp or (),
                           int8_deconv=args.int8_deconv)
    print(summary(out, manifest, time.perf_counter() - start))
    return 0

def cmd_calibrate(args: argparse.Namespace) -> int:
    import time

    from ..export.precision import add_precisions
    from ..export.summary import summary

    start = time.perf_counter()
    manifest = add_precisions(args.onnx, ["int8"], calib=args.calib, calib_synthetic=args.calib_synthetic,
                              calib_method=args.calib_method, keep_fp=args.keep_fp or (),
                              int8_deconv=args.int8_deconv)
    print(summary(args.onnx, manifest, time.perf_counter() - start))
    return 0

def cmd_build(args: argparse.Namespace) -> int:
    from ..runtime.build import build_engines, dry_run
    from ..runtime.engines import parse_batch

    try:
        batch = parse_batch(args.batch)
    except ValueError as exc:
        raise AnonymixerError(f"--batch: {exc}") from None
    if args.dry_run:
        print("\n".join(dry_run(args.onnx, precision=args.precision, batch=batch)))
        return 0
    if args.out is None:
        raise AnonymixerError("build needs --out DIR (the engine folder to write), or --dry-run to print the plan")
    paths = build_engines(args.onnx, args.out, precision=args.precision, batch=batch, workspace_mb=args.workspace,
                          timing_cache=args.timing_cache, device_id=args.device, report=print)
    print(f"wrote {len(paths)} engine(s) to {args.out}; use them with --engines {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="convert official e4e/pSp, StyleGAN2 and ArcFace files into one bundle")
    p.add_argument("--e4e", metavar="FILE", help="e4e checkpoint, e.g. e4e_ffhq_encode.pt (encoder + decoder)")
    p.add_argument("--psp", metavar="FILE", help="pSp checkpoint, e.g. psp_ffhq_encode.pt (encoder + decoder)")
    p.add_argument("--stylegan2", metavar="FILE",
                   help="rosinality StyleGAN2 .pt (g_ema); replaces the e4e/pSp decoder if both are given")
    p.add_argument("--arcface", metavar="FILE", help="TreB1eN ArcFace model_ir_se50.pth (for losses and evaluation)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle file to write")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="write ONNX graphs of every stage (fp32, fp16, int8) with parity and "
                                      "accuracy reports")
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="bundle file from `anonymixer import`, faces64 (real 64-px weights that ship with anonymixer), "
                        "or random:tiny|ffhq256|ffhq1024[@seed]")
    p.add_argument("--out", required=True, metavar="DIR", help="export folder to write")
    p.add_argument("--precision", default="fp32", metavar="LIST",
                   help="comma-separated: fp32 (always), fp16, int8 (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--layer-mask", default=None, metavar="LAYERS",
                   help="W+ layers taken from the key, e.g. 3-7 (default: the model's)")
    p.add_argument("--mixer", default=None, choices=MIXER_MODES,
                   help="mixer mode baked into mixer.onnx (default: learned if the bundle has one, else project)")
    p.add_argument("--rank", type=int, default=None, metavar="R",
                   help="project mode: dimensions of the whitened code kept (default: D/2)")
    p.add_argument("--no-radius-guard", action="store_true",
                   help="rotate/project: do not rescale mixed codes to the prior's typical radius")
    p.add_argument("--opset", type=int, default=17,
                   help="ONNX opset, at most 20 (TensorRT 10.x's parser; INT8 graphs use >= 19) (default: %(default)s)")
    add_calibration_options(p)
    p.add_argument("--force", action="store_true", help="replace an existing export in DIR")
    add_trusted_key_option(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("calibrate", help="add INT8 (Q/DQ) graphs to an export folder; no PyTorch needed")
    p.add_argument("--onnx", required=True, metavar="DIR", help="export folder from `anonymixer export`")
    add_calibration_options(p)
    add_trusted_key_option(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("build", help="build TensorRT engines (one per graph) from an export folder, for this GPU")
    p.add_argument("--onnx", required=True, metavar="DIR", help="export folder from `anonymixer export`")
    p.add_argument("--out", metavar="DIR", help="engine folder to write (engines + sidecar JSON)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                   help="which exported graphs to build; mapping and mixer are always FP32 (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the build plan (typing mode, flags, per-graph precision, profiles) for the installed "
                        "TensorRT and for TensorRT 10.3, 10.12 and 11.1; build nothing, no GPU needed")
    p.add_argument("--batch", default="1,1,8", metavar="MIN,OPT,MAX",
                   help="faces per call covered by the optimization profile (default: %(default)s)")
    p.add_argument("--workspace", type=positive_int, default=4096, metavar="MB",
                   help="TensorRT workspace memory limit (default: %(default)s)")
    p.add_argument("--timing-cache", default=None, metavar="FILE",
                   help="timing cache reused across builds on this GPU (created if missing)")
    p.add_argument("--device", type=int, default=0, metavar="N", help="CUDA device (default: %(default)s)")
    p.set_defaults(func=cmd_build)
    add_trusted_key_option(p)
