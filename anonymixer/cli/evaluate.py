"""`evaluate`: biometric evaluation with a face recognition system."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import check_writable
from ..errors import AnonymixerError
from .common import add_trusted_key_option, int_list, positive_int
from .jsonout import add_json_option, set_result


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..eval.fr import FR_NAMES
    from ..eval.protocols import EvalConfig, evaluate
    from ..eval.report import summary_lines, write_reports

    if args.synthetic is not None:
        return _evaluate_synthetic(args)
    if args.data is None:
        raise AnonymixerError("give --data DIR (one sub-folder of photos per identity) or --synthetic N")
    if args.model is None and args.onnx is None and args.engines is None:
        raise AnonymixerError("give the model to evaluate: --model BUNDLE (or random:tiny|ffhq256|ffhq1024 "
                              "for a pipeline check), --onnx EXPORT_DIR and/or --engines ENGINE_DIR")
    check_writable(Path(args.out))   # a file, a path below a file or a read-only folder fails before the work
    fr_options: dict[str, object] = {"accept_noncommercial": args.accept_noncommercial}
    if args.fr not in FR_NAMES:  # an ONNX model given by path
        fr_options.update(input_size=args.fr_size, mean=args.fr_mean, std=args.fr_std, bgr=args.fr_bgr,
                          threshold=args.fr_threshold)
    config = EvalConfig(data=Path(args.data), model=args.model, onnx=Path(args.onnx) if args.onnx else None,
                        engines=Path(args.engines) if args.engines else None, key_mode=args.key_mode, fr=args.fr, fr_options=fr_options, detector=args.detector,
                        seed=args.seed, salt=args.salt, device=args.device, batch=args.batch)
    result = evaluate(config)
    paths = write_reports(result, Path(args.out))
    set_result(args, {"mode": "data", "report": json.loads(paths[0].read_text(encoding="utf-8")), "written": paths})
    for line in summary_lines(result):
        print(line)
    for line in result.data["skipped"]:
        print(f"skipped: {line}")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    if result.settings.get("model_is_random"):
        print("NOTE: random weights: a pipeline check; the numbers say nothing about protection")
    return 0 if not result.data["skipped"] else 1

def _evaluate_synthetic(args: argparse.Namespace) -> int:
    from ..eval.synthetic import SyntheticConfig, evaluate_synthetic
    from ..eval.synthetic_report import markdown, write_synthetic_reports

    if args.data is not None or args.onnx is not None or args.engines is not None:
        raise AnonymixerError("--synthetic runs on --model (torch); drop --data, --onnx and --engines")
    check_writable(Path(args.out))
    config = SyntheticConfig(model=args.model or "faces64", identities=args.synthetic, fr=args.fr,
                             seed=args.seed, batch=args.batch, rank=args.rank, ranks=args.ranks or (),
                             through_encoder=False if args.generator_only else None)
    if args.modes:
        config.modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    result = evaluate_synthetic(config)
    paths = write_synthetic_reports(result, Path(args.out))
    set_result(args, {"mode": "synthetic", "report": json.loads(paths[0].read_text(encoding="utf-8")),
                      "written": paths})
    for line in markdown(result):
        print(line)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="biometric evaluation with a face recognition system: utility, "
                                        "protection, unlinkability, irreversibility, template stability")
    p.add_argument("--data", default=None, metavar="DIR", help="one sub-folder of photos per identity")
    p.add_argument("--synthetic", type=positive_int, default=None, metavar="N",
                   help="instead of --data: N identities that are model codes, with synthetic mated samples; "
                        "reports every mixer mode and the project rank sweep (see anonymixer.eval.synthetic)")
    p.add_argument("--modes", default=None, metavar="LIST",
                   help="--synthetic: mixer modes to compare (default: rotate,rotate-noguard,project,swap)")
    p.add_argument("--rank", type=positive_int, default=None, metavar="R",
                   help="--synthetic: project's rank in the mode table (default: D/2)")
    p.add_argument("--ranks", type=int_list, default=None, metavar="LIST",
                   help="--synthetic: project's ranks in the sweep (default: D/10, D/4, D/2, 3D/4, 9D/10)")
    p.add_argument("--generator-only", action="store_true",
                   help="--synthetic: protect known codes, G(mix(w)), instead of going through the encoder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for eval.json, report.md, scores.npz, plots")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="bundle file from `anonymixer import`, faces64, or random:tiny|ffhq256|ffhq1024[@seed] (torch)")
    p.add_argument("--onnx", default=None, metavar="DIR",
                   help="export folder (`anonymixer export`): its fp32/fp16/int8 graphs on ONNX Runtime (CPU) are "
                        "compared (template stability); the protocols run on it when --model is not given")
    p.add_argument("--engines", default=None, metavar="DIR",
                   help="TensorRT engine folder (`anonymixer build`): compared too; the protocols run on it "
                        "when neither --model nor --onnx is given")
    p.add_argument("--key-mode", choices=("per-identity", "shared"), default="per-identity",
                   help="one key per identity, or one key for everyone (default: %(default)s)")
    p.add_argument("--fr", default="sface", metavar="NAME|PATH",
                   help="face recognition system: sface, dlib, arcface-mbf (non-commercial research licence: "
                        "needs --accept-noncommercial), or an ONNX embedding model (default: %(default)s)")
    p.add_argument("--fr-size", type=positive_int, default=112, help="ONNX FR model input size (default: %(default)s)")
    p.add_argument("--fr-mean", type=float, default=127.5, help="ONNX FR model: (pixel - mean) / std (default: %(default)s)")
    p.add_argument("--fr-std", type=float, default=127.5, help="ONNX FR model: (pixel - mean) / std (default: %(default)s)")
    p.add_argument("--fr-bgr", action="store_true", help="ONNX FR model takes BGR (default: RGB)")
    p.add_argument("--fr-threshold", type=float, default=None, help="ONNX FR model's own cosine threshold, if known")
    p.add_argument("--accept-noncommercial", action="store_true",
                   help="allow arcface-mbf, whose licence permits non-commercial research only")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH", help="face detector (default: %(default)s)")
    add_trusted_key_option(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation keys (default: %(default)s)")
    p.add_argument("--salt", default=None, help="deployment salt (default: $ANONYMIXER_SALT or built-in)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=8, help="faces per batch (default: %(default)s)")
    add_json_option(p)
    p.set_defaults(func=cmd_evaluate)
