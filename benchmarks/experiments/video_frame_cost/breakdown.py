"""Where a tracked video frame's time goes (session 9): one 640x480 face moving as in ``video_memory.py``.

    python benchmarks/experiments/video_frame_cost/breakdown.py --onnx out/bench/cpu_faces64_s9b/onnx [--frames 300]

Frames go one at a time through ``FaceProtector.process`` with a ``LandmarkSmoother`` (as ``protect VIDEO``:
the face is tracked, its draw chosen once, the identity check again on every 30th frame). Prints the
frame's median, mean and p99 ms after the first 30 frames, each stage's mean over the frames where it ran
(``timings_ms``; the identity check's is per check), and the orientation check's own mean (inside detection).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from anonymixer.bench.inputs import bench_key, face_tiles, video_frame
from anonymixer.face import search
from anonymixer.face.detect import open_detector
from anonymixer.face.pipeline import FaceProtector
from anonymixer.face.track import LandmarkSmoother
from anonymixer.runtime import Protector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="an export folder (anonymixer export), run on ONNX Runtime's CPU")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    base = video_frame(face_tiles())
    orientation_ms: list[float] = []
    checked = search.orientation

    def timed(*a, **k):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return checked(*a, **k)
        finally:
            orientation_ms.append((time.perf_counter() - started) * 1000.0)

    search.orientation = timed
    protector = Protector(args.onnx, bench_key(), backend="ort", precision=args.precision, providers="cpu")
    face_protector = FaceProtector(protector, open_detector("yunet"))
    smoother = LandmarkSmoother()
    stages: dict[str, list[float]] = {}
    totals = []
    for i in range(args.frames):
        frame = np.roll(base, int(40 * np.sin(i / 25.0)), axis=1)   # video_memory.py's drift
        started = time.perf_counter()
        result = face_protector.process(frame, smoother, i / 25.0)
        totals.append((time.perf_counter() - started) * 1000.0)
        if i >= 30:
            for name, ms in result.timings_ms.items():
                stages.setdefault(name, []).append(ms)
    kept = np.array(totals[30:])
    print(f"identity check: {face_protector.identity_status}; {len(kept)} frames after 30")
    print(f"frame ms: median {np.median(kept):.1f}, mean {kept.mean():.1f}, p99 {np.percentile(kept, 99):.1f}")
    print("stage means (ms, over the frames where the stage ran): "
          + ", ".join(f"{name} {np.mean(v):.2f} ({len(v)})" for name, v in stages.items()))
    print(f"orientation check: {np.mean(orientation_ms[30:]):.2f} ms a call (inside detect)")


if __name__ == "__main__":
    main()
