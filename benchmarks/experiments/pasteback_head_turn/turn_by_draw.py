"""How far each of faces64's eight draws turns the head from the person's, and how often the guard passes it.

Every face of ``benchmarks/pasteback_realism.py``'s sets (115 faces of 75 real photos), keys
``eval_key(0, "pasteback-K", "*")`` for K = 0, 1, 2, each of the key's eight draws (``guard.redraw_feeds``:
0 the key's own, 1-3 its reflections, 4-7 those four with the person's head turn kept), as drawn (not
pasted): the difference of ``guard.head_turn`` between the generated face (YuNet's landmarks) and the
photo's face (the detector's), and the guard's verdict on the generated face alone (YuNet, landmarks,
cheeks, head turn; the pasted split test is not run here). Session 8 (docs/pasteback.md, "Artefact
guard"):

    python benchmarks/experiments/pasteback_head_turn/turn_by_draw.py [--photos out/photos]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pasteback_realism import _read, collect_photos  # noqa: E402

from anonymixer.eval.protocols import eval_key  # noqa: E402
from anonymixer.face.detect import open_detector  # noqa: E402
from anonymixer.face.guard import MAX_TURN, head_turn  # noqa: E402
from anonymixer.face.pipeline import FaceProtector  # noqa: E402
from anonymixer.runtime import Protector  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--keys", type=int, default=3)
    args = parser.parse_args(argv)
    photos = collect_photos(Path(args.photos))
    detector = open_detector("yunet")
    turns: list[list[float]] = [[] for _ in range(8)]
    passed: list[list[bool]] = [[] for _ in range(8)]
    for k in range(args.keys):
        with Protector("faces64", eval_key(0, f"pasteback-{k}", "*")) as protector:
            face_protector = FaceProtector(protector, detector, identity_check=False)
            chooser = face_protector.draws
            assert face_protector.guard is not None and chooser.count == 8
            for photo in photos:
                image = _read(photo.path)
                work = face_protector.prepare(image)
                for i in sorted(photo.faces):
                    crop = work.crops[i][0]
                    person = head_turn(work.result.faces[i].landmarks)
                    for d in range(8):
                        verdict = face_protector.guard.check(protector.protect(crop[None], chooser.feeds(d))[0], person)
                        turns[d].append(verdict.turn if verdict.score > 0 else float("nan"))   # nan: no face found
                        passed[d].append(verdict.passed)
    faces = len(turns[0])
    print(f"{faces} faces x keys; head turn difference from the person's (interocular distances), per draw:")
    print("| draw | median difference | share within MAX_TURN (%.2f) | guard passes it as drawn |" % MAX_TURN)
    print("|---|---|---|---|")
    for d in range(8):
        t = np.asarray(turns[d])
        finite = t[np.isfinite(t)]
        print(f"| {d} | {np.median(finite):.3f} | {np.mean(np.nan_to_num(t, nan=np.inf) <= MAX_TURN):.1%} | "
              f"{np.mean(passed[d]):.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
