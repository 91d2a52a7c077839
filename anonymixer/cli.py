"""``anonymixer <command>``: the command line.

Every command reports bad input as one line naming the file and the problem, finishes the rest of
a batch, and exits non-zero when anything failed (1) or the command itself was wrong (2).
Secrets are never printed: key files are referred to by path and fingerprint only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import AnonymixerError

log = logging.getLogger("anonymixer")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_keygen(args: argparse.Namespace) -> int:
    from .keys import generate_key, save_key

    key = generate_key()
    save_key(key, args.out, overwrite=args.force)
    print(f"wrote key {args.out} (mode 0600; keep it secret, keep a backup)")
    print(f"fingerprint: {key.fingerprint}")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from .keys import load_key

    for path in args.keys:
        print(f"{load_key(path).fingerprint}  {path}")
    return 0


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given, folders searched recursively for images (sorted, so runs are repeatable)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(path)
    return paths


def cmd_protect(args: argparse.Namespace) -> int:
    if not args.aligned:
        raise AnonymixerError("whole-photo protection needs the face detector, which is not built yet: "
                              "pass --aligned with 256x256 aligned face crops")
    from .face.aligned import protect_aligned_files
    from .keys import load_key
    from .runtime import Protector

    key = load_key(args.key)
    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise AnonymixerError("no input images found in " + ", ".join(args.inputs))
    with Protector(args.model, key, backend=args.backend, salt=args.salt, device=args.device,
                   output_resolution=args.resolution) as protector:
        print(f"model: {protector.info.description}")
        print(f"key: {protector.fingerprint}   backend: {protector.backend.describe()}")
        report = protect_aligned_files(protector, inputs, Path(args.out), batch_size=args.batch)
    print(report.summary())
    if protector.info.is_random:
        print("NOTE: random weights: for pipeline and latency checks only; the faces are not realistic")
    return 0 if not report.failures else 1


def cmd_import(args: argparse.Namespace) -> int:
    from .models.bundle import save_bundle
    from .models.checkpoints import import_bundle, summary_lines

    out = Path(args.out)
    if out.exists() and not args.force:
        raise AnonymixerError(f"{out} already exists; pass --force to replace it")
    bundle = import_bundle(e4e=args.e4e, psp=args.psp, stylegan2=args.stylegan2, arcface=args.arcface)
    save_bundle(bundle, out)
    print(f"wrote model bundle {out}")
    for line in summary_lines(bundle):
        print(line)
    print(f"use it with --model {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anonymixer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"anonymixer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="write a new random secret key (mode 0600) and print its fingerprint")
    p.add_argument("--out", required=True, help="key file to create")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("fingerprint", help="print the public fingerprint of key files (safe to log)")
    p.add_argument("keys", nargs="+", metavar="KEYFILE")
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser("protect", help="replace faces by protected faces under a key")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--key", required=True, help="key file from `anonymixer keygen`")
    p.add_argument("--model", default="random:ffhq256",
                   help="bundle file from `anonymixer import`, or random:tiny|ffhq256|ffhq1024[@seed] "
                        "(default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder; files keep their names")
    p.add_argument("--aligned", action="store_true", help="inputs are 256x256 aligned face crops")
    p.add_argument("--backend", default="torch", help="torch (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator early at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--batch", type=_positive_int, default=8, help="faces per batch (default: %(default)s)")
    p.add_argument("--salt", default=None, help="deployment salt (default: $ANONYMIXER_SALT or built-in)")
    p.set_defaults(func=cmd_protect)

    p = sub.add_parser("import", help="convert official e4e/pSp, StyleGAN2 and ArcFace files into one bundle")
    p.add_argument("--e4e", metavar="FILE", help="e4e checkpoint, e.g. e4e_ffhq_encode.pt (encoder + decoder)")
    p.add_argument("--psp", metavar="FILE", help="pSp checkpoint, e.g. psp_ffhq_encode.pt (encoder + decoder)")
    p.add_argument("--stylegan2", metavar="FILE",
                   help="rosinality StyleGAN2 .pt (g_ema); replaces the e4e/pSp decoder if both are given")
    p.add_argument("--arcface", metavar="FILE", help="TreB1eN ArcFace model_ir_se50.pth (for losses and evaluation)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle file to write")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="anonymixer: %(levelname)s: %(message)s")
    try:
        return int(args.func(args))
    except AnonymixerError as exc:
        print(f"anonymixer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anonymixer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
