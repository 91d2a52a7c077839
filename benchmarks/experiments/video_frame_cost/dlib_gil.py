"""Does dlib let other Python threads run while it computes a face descriptor? (session 9)

    python benchmarks/experiments/video_frame_cost/dlib_gil.py

Times (best of 5) dlib's recogniser on two 150-px chips in one call, on one chip, and on one chip in each
of two threads. Two threads as slow as one call: dlib holds Python's GIL while it computes, so the
identity check stops every thread of the run (the capture too), which is why a camera's re-checks run in
a process of their own (``identity.BackgroundCheck``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from anonymixer.eval.fr import DlibRecognizer


def best(call: Callable[[], object], n: int = 5) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return min(times)


def main() -> None:
    recogniser = DlibRecognizer()
    chips = np.random.default_rng(0).integers(0, 255, (2, 150, 150, 3), dtype=np.uint8)
    recogniser.embed(chips)   # warm

    def two_threads() -> None:
        threads = [threading.Thread(target=recogniser.embed, args=(chips[i:i + 1],)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    print(f"two chips in one call: {best(lambda: recogniser.embed(chips)):.1f} ms")
    print(f"one chip: {best(lambda: recogniser.embed(chips[:1])):.1f} ms")
    print(f"one chip in each of two threads: {best(two_threads):.1f} ms")


if __name__ == "__main__":
    main()
