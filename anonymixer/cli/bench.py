"""`doctor` and `bench`: what this machine can run, and how fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..atomic import prepare_folder
from .common import add_trusted_key_option, int_list, positive_int
from .jsonout import add_json_option, set_result


def cmd_doctor(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..runtime.doctor import collect, report

    findings = collect()
    print(f"anonymixer {__version__}")
    for line in report(findings):
        print(line)
    set_result(args, asdict(findings))
    return 0

def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.measure import BenchConfig, run_bench
    from ..bench.report import markdown, write_reports

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
    set_result(args, {"report": data, "written": paths})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what this machine can run: Python, onnxruntime, torch, TensorRT, CUDA, GPU")
    add_json_option(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("bench", help="per-stage latency and throughput of backends and precisions, side by side "
                                     "(bench.json, bench.md, bench.png)")
    p.add_argument("--model", default="random:ffhq256", metavar="SPEC",
                   help="bundle file from `anonymixer import`, faces64, or random:tiny|ffhq256|ffhq1024[@seed] "
                        "(default: %(default)s)")
    p.add_argument("--backends", default="torch,ort,trt", metavar="LIST",
                   help="torch, ort, trt; torch fp32 always runs as the baseline; trt is skipped with the "
                        "reason where TensorRT cannot run (default: %(default)s)")
    p.add_argument("--precisions", default="fp32,fp16,int8", metavar="LIST",
                   help="fp32, fp16, int8 for ort/trt; graphs are exported into OUT/onnx (default: %(default)s)")
    p.add_argument("--batch", type=int_list, default=(1, 4), metavar="LIST",
                   help="faces per call, and per frame (default: 1,4)")
    p.add_argument("--inflight", type=int_list, default=(1, 3), metavar="LIST",
                   help="frames in flight for the throughput runs (default: 1,3)")
    p.add_argument("--resolution", type=int, default=None,
                   help="stop the generator early at this resolution (e.g. 256 from a 1024 model)")
    p.add_argument("--warmup", type=int, default=2, metavar="N",
                   help="untimed calls first, at least; more follow until the stage's times settle; 0: no warm-up "
                        "(default: %(default)s)")
    p.add_argument("--iters", type=positive_int, default=None, metavar="N",
                   help="timed calls per stage (default: at least 10 and 2 s of them, at most 200; whole frames and "
                        "in-flight runs: 10)")
    p.add_argument("--out", default="bench", metavar="DIR",
                   help="folder for bench.json, bench.md, bench.png and the onnx/ export (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: torch device, ONNX Runtime's CUDA "
                                                   "provider, TensorRT's GPU")
    p.add_argument("--peak-tflops", type=float, default=None, metavar="X",
                   help="the device's dense peak, for the compute floor (one figure for every precision)")
    p.add_argument("--peak-device", default=None, metavar="NAME",
                   help="take the peak from the built-in table (h100-sxm, a100, l4, rtx-4090, jetson-agx-orin-64gb, "
                        "jetson-orin-nano-8gb, ...; see anonymixer.bench.peaks); a GPU is looked up by name")
    p.add_argument("--calib-synthetic", type=positive_int, default=None, metavar="N",
                   help="INT8 calibration faces drawn by the model for the export (default: export's)")
    p.add_argument("--detector", default="yunet", metavar="yunet|dlib|PATH|none",
                   help="detector for the whole-frame rows; none measures the networks only (default: %(default)s)")
    p.add_argument("--video-frames", type=positive_int, default=30, metavar="N",
                   help="640x480 one-face frames per whole-frame stream row, for each --inflight (default: %(default)s)")
    add_trusted_key_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_bench)
