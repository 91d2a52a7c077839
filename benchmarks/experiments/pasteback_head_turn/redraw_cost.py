"""What the artefact guard's redraws cost: seven other draws of one face, each through ``Protector.protect``
(the encoder every time, as before 85c1df0) against one ``Protector.encode`` and a ``render`` per draw.

    python benchmarks/experiments/pasteback_head_turn/redraw_cost.py [--runs 15]

Grace Hopper under ``eval_key(0, "pasteback-58", "*")`` (none of her eight draws passes the guard), the
two ways alternating; prints the medians (session 8: 97.5 against 42.9 ms on this 2-core VM).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import cv2

from anonymixer.eval.protocols import eval_key
from anonymixer.face.detect import open_detector
from anonymixer.face.photos import packaged_photo
from anonymixer.face.pipeline import FaceProtector
from anonymixer.runtime import Protector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    image = cv2.imread(str(packaged_photo("grace_hopper")))
    with Protector("faces64", eval_key(0, "pasteback-58", "*")) as protector:
        face_protector = FaceProtector(protector, open_detector("yunet"), identity_check=False)
        crop = face_protector.prepare(image).crops[0][0][None]
        feeds = [face_protector.draws.feeds(d) for d in range(1, face_protector.draws.count)]

        def each() -> None:
            for f in feeds:
                protector.protect(crop, f)

        def shared() -> None:
            code = protector.encode(crop)
            for f in feeds:
                protector.render(code, f)

        times: dict[str, list[float]] = {"protect each": [], "encode once": []}
        each(), shared()   # warm
        for _ in range(args.runs):
            for name, run in (("protect each", each), ("encode once", shared)):
                started = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - started) * 1000.0)
    print(f"{len(feeds)} redraws: " + ", ".join(f"{k} {statistics.median(v):.1f} ms" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
