"""A long video through the whole-frame pipeline: is memory flat, and how fast is it end to end?

    python benchmarks/video_memory.py --onnx out/bench/faces64/onnx --precision int8 [--frames 1000] [--inflight 2]
    python benchmarks/video_memory.py --model random:tiny

Writes a 640x480 MJPG video of ``--frames`` frames (one face, the packaged astronaut photo moving
across a gray frame), then protects it exactly as ``anonymixer protect VIDEO --inflight N`` does
(``face.app.protect_sources``: decode, detect, align, networks, paste-back, encode), and samples
the process's resident set (VmRSS) while frames are written: at frame 100 and at the last frame,
with the peak (VmHWM). Prints a Markdown block with the CPU's INT8 features and the load average.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def write_test_video(path: Path, frames: int, fps: float = 25.0) -> None:
    from anonymixer.bench.inputs import face_tiles, video_frame

    base = video_frame(face_tiles())
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (base.shape[1], base.shape[0]))
    for i in range(frames):
        shift = int(40 * np.sin(i / 25.0))   # the face drifts left and right
        writer.write(np.roll(base, shift, axis=1))
    writer.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:tiny", help="SPEC for the torch backend (without --onnx)")
    parser.add_argument("--onnx", default=None, help="export folder: run it on ONNX Runtime's CPU provider")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=2)
    parser.add_argument("--sample-at", type=int, default=100)
    args = parser.parse_args(argv)

    from anonymixer.bench.inputs import bench_key
    from anonymixer.bench.machine import cpu_model, int8_features, load_average
    from anonymixer.face import app
    from anonymixer.face.detect import open_detector
    from anonymixer.face.pipeline import FaceProtector
    from anonymixer.face.sources import expand_sources
    from anonymixer.runtime import Protector

    if args.onnx:
        protector = Protector(args.onnx, bench_key(), backend="ort", precision=args.precision, providers="cpu")
    else:
        protector = Protector(args.model, bench_key())
    face_protector = FaceProtector(protector, open_detector("yunet"))
    samples: dict[int, float] = {}
    real_count = app.RunReport.add_frame

    def counting(report, result):   # called once per frame, in output order
        real_count(report, result)
        if report.frames in (1, args.sample_at, args.frames):
            samples[report.frames] = status_mb("VmRSS")

    app.RunReport.add_frame = counting  # type: ignore[method-assign]
    load_start = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.avi"
        write_test_video(video, args.frames)
        start = time.perf_counter()
        report = app.protect_sources(face_protector, expand_sources([str(video)]).sources, Path(tmp) / "out",
                                     inflight=args.inflight)
        wall = time.perf_counter() - start
    what = f"`--onnx {args.onnx} --precision {args.precision}`" if args.onnx else f"`--model {args.model}`"
    print("\n".join([
        f"### `video_memory.py` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()})", "",
        f"{what}, {protector.backend.describe()}; {args.frames} frames of 640x480 with one face, "
        f"--inflight {args.inflight}; CPU INT8 features: {int8_features()}; load average {load_start} at start, "
        f"{load_average()} at end.", "",
        "| frames | faces protected | masked | wall s | fps | RSS at frame 1 MB | "
        f"RSS at frame {args.sample_at} MB | RSS at frame {args.frames} MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {report.frames} | {report.faces} | {report.masked} | {wall:.1f} | {report.frames / wall:.1f} | "
        f"{samples.get(1, float('nan')):.0f} | {samples.get(args.sample_at, float('nan')):.0f} | "
        f"{samples.get(args.frames, float('nan')):.0f} | {status_mb('VmHWM'):.0f} |"]))
    return 0 if report.frames == args.frames else 1


if __name__ == "__main__":
    raise SystemExit(main())
