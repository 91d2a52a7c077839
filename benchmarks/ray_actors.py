"""Throughput of `anonymixer protect --ray` with 1 and 2 actors on this machine (a local Ray instance).

    python benchmarks/ray_actors.py [--photos 48] [--actors 1,2] [--model random:tiny] [--repeat 2]

Writes an archive of small photos (the packaged astronaut and Grace Hopper photos, 160x160,
shifted) and 2 videos of 12 frames into a temporary folder, then runs the real command once per
actor count and repeat, in a fresh process each time. Prints one Markdown row per run: the run's
own wall time ("in X s" of the report: Ray start, actors opening their model, and the work) and
faces per second, plus the machine (CPU model, cores, load average before and after).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def make_archive(root: Path, photos: int) -> None:
    from anonymixer.face.io import read_image
    from anonymixer.face.photos import packaged_photo

    faces = [cv2.resize(read_image(packaged_photo("astronaut")), (160, 160), interpolation=cv2.INTER_AREA),
             cv2.resize(read_image(packaged_photo("grace_hopper"))[44:556], (160, 160), interpolation=cv2.INTER_AREA)]
    root.mkdir(parents=True)
    for i in range(photos):
        cv2.imwrite(str(root / f"p{i:03d}.png"), np.roll(faces[i % 2], i % 40, axis=1))
    frame = cv2.resize(faces[0], (192, 144))
    for name in ("v1.avi", "v2.avi"):
        writer = cv2.VideoWriter(str(root / name), cv2.VideoWriter.fourcc(*"MJPG"), 10, (192, 144))
        for shift in range(12):
            writer.write(np.roll(frame, 2 * shift, axis=1))
        writer.release()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--actors", default="1,2")
    parser.add_argument("--model", default="random:tiny")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anonymixer-ray-bench-") as tmp:
        root = Path(tmp)
        make_archive(root / "in", args.photos)
        key = root / "bench.key"
        subprocess.run([sys.executable, "-m", "anonymixer.cli", "keygen", "--out", str(key)], check=True,
                       capture_output=True)
        print(f"{cpu_name()}, {os.cpu_count()} cores; load average before: {os.getloadavg()}")
        print(f"{args.photos} photos (160x160, one face each) + 2 videos of 12 frames (192x144), model {args.model}")
        print("| actors | run | inputs | faces | wall s (command) | s (report) | faces/s |")
        print("|---|---|---|---|---|---|---|")
        for actors in [int(a) for a in args.actors.split(",")]:
            for run in range(args.repeat):
                out = root / f"out-{actors}-{run}"
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "anonymixer.cli", "protect", str(root / "in"),
                                       "--key", str(key), "--model", args.model, "--out", str(out),
                                       "--ray", "--ray-actors", str(actors)], capture_output=True, text=True)
                wall = time.perf_counter() - started
                found = re.search(r"(\d+) frame\(s\), (\d+) face\(s\) protected, \d+ masked, in ([0-9.]+) s", done.stdout)
                if done.returncode != 0 or found is None:
                    print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                    return 1
                frames, faces, seconds = int(found[1]), int(found[2]), float(found[3])
                print(f"| {actors} | {run + 1} | {args.photos + 2} | {faces} | {wall:.1f} | {seconds:.1f} | "
                      f"{faces / seconds:.2f} |", flush=True)
        print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
