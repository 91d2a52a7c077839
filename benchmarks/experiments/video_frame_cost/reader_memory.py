"""Why protect VIDEO's memory grew (session 9): resident memory while a 640x480 file is decoded.

    python benchmarks/experiments/video_frame_cost/reader_memory.py [--frames 2000]

Writes video_memory.py's test clip (MJPG, the face drifting), then decodes it four ways, each in a fresh
process, printing VmRSS (MB) every 250 frames: ``reader`` (``face.video.VideoReader.frames``, as
protect VIDEO reads), ``pyav`` (PyAV's decode and ``to_ndarray`` alone), ``pyav+side_data`` (the same,
reading every frame's ``side_data["DISPLAYMATRIX"]``, as the reader did before 81f7d3b) and
``pyav+side_data+gc`` (the same with ``gc.collect()`` every 50 frames: the growth is frames waiting for
Python's cyclic collector, not a leak).
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from video_memory import status_mb, write_test_video  # noqa: E402

MODES = ("reader", "pyav", "pyav+side_data", "pyav+side_data+gc")


def decode(path: str, mode: str) -> list[int]:
    samples = []
    if mode == "reader":
        from anonymixer.face.sources import expand_sources
        from anonymixer.face.video import VideoReader

        reader = VideoReader(expand_sources([path]).sources[0])
        for i, _ in enumerate(reader.frames()):
            if i % 250 == 249:
                samples.append(round(status_mb("VmRSS")))
        reader.close()
        return samples
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            frame.to_ndarray(format="bgr24")
            if "side_data" in mode:
                frame.side_data.get("DISPLAYMATRIX")
            if mode.endswith("+gc") and i % 50 == 0:
                gc.collect()
            if i % 250 == 249:
                samples.append(round(status_mb("VmRSS")))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--decode", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decode:
        print(decode(*args.decode))
        return
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.avi"
        write_test_video(clip, args.frames)
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--decode", str(clip), mode], check=True,
                                 capture_output=True, text=True).stdout.strip()
            print(f"{mode:20s} RSS MB every 250 frames: {out}")


if __name__ == "__main__":
    main()
