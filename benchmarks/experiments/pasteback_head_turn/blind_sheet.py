"""Blind rating of the demo photos' protected faces under two versions of the code (session 8).

Each version writes the close-ups of README's demo photos (the astronaut, Grace Hopper) protected under
evaluation keys ``eval_key(0, "pasteback-K", "*")`` (the default pipeline, dlib's identity check on):

    python benchmarks/experiments/pasteback_head_turn/blind_sheet.py tiles OUT.npy --keys 50-70

(run once per version: e.g. ``git worktree add /tmp/old 954ec39`` and ``PYTHONPATH=/tmp/old python ...``).
Then the two sets are shuffled into one sheet, numbered, with which is which kept in SHEET.key.npy:

    python benchmarks/experiments/pasteback_head_turn/blind_sheet.py sheet SHEET.png OLD.npy NEW.npy --seed 9

A person marks the numbers of the faces that are broken (a split or streak in shade, a blob, a ghost,
a distorted face) without looking at the key, then:

    python benchmarks/experiments/pasteback_head_turn/blind_sheet.py score SHEET.png --broken 3,4,6,...

prints, per version, the broken faces and the demo runs (keys) with both faces unbroken, and the faces
broken under one version only. The ratings of session 8 are in ``ratings.json`` beside this script
(keys 30-49: seed 3, the experiment that became 247efcb against 954ec39's pipeline; keys 50-69: seed 9,
954ec39 against 247efcb). The ratings are one person's judgement; the sheets are reproducible.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np


def tiles(out: str, keys: str) -> None:
    from anonymixer.eval.protocols import eval_key
    from anonymixer.face.detect import open_detector
    from anonymixer.face.photos import packaged_photo
    from anonymixer.face.pipeline import FaceProtector
    from anonymixer.runtime import Protector

    lo, hi = (int(k) for k in keys.split("-"))
    detector = open_detector("yunet")
    images = [cv2.imread(str(packaged_photo(name))) for name in ("astronaut", "grace_hopper")]
    made = []
    for k in range(lo, hi):
        with Protector("faces64", eval_key(0, f"pasteback-{k}", "*")) as protector:
            face_protector = FaceProtector(protector, detector, identity_check=True)
            for image in images:
                x, y, w, h = (int(v) for v in detector.detect(image)[0].box)
                cx, cy, side = x + w // 2, y + h // 2, int(max(w, h) * 1.5)
                frame = face_protector.process(image).frame
                crop = frame[max(0, cy - side // 2):cy + side // 2, max(0, cx - side // 2):cx + side // 2]
                made.append(cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA))
    np.save(out, np.array(made))   # face i: key lo + i // 2, astronaut (even) or Grace Hopper (odd)


def sheet(out: str, files: list[str], seed: int) -> None:
    items = [(v, i, t) for v, f in enumerate(files) for i, t in enumerate(np.load(f))]
    order = np.random.default_rng(seed).permutation(len(items))
    shown = []
    for m, j in enumerate(order):
        tile = items[j][2].copy()
        cv2.putText(tile, str(m), (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
        shown.append(tile)
    while len(shown) % 10:
        shown.append(np.zeros_like(shown[0]))
    cv2.imwrite(out, np.vstack([np.hstack(shown[i:i + 10]) for i in range(0, len(shown), 10)]))
    np.save(out + ".key.npy", np.array([(items[j][0], items[j][1]) for j in order]))


def score(sheet_path: str, broken: set[int]) -> None:
    key = np.load(sheet_path + ".key.npy")
    marked: dict[int, dict[int, bool]] = {}
    for m, (version, index) in enumerate(key):
        marked.setdefault(int(version), {})[int(index)] = m in broken
    faces = len(marked[0])
    for version, faces_marked in sorted(marked.items()):
        both = sum(not faces_marked[2 * j] and not faces_marked[2 * j + 1] for j in range(faces // 2))
        print(f"version {version}: {sum(faces_marked.values())} of {faces} faces broken; "
              f"{both} of {faces // 2} demo runs with both faces unbroken")
    only = [sum(marked[a][i] and not marked[b][i] for i in range(faces)) for a, b in ((0, 1), (1, 0))]
    print(f"broken under version 0 only: {only[0]}, under version 1 only: {only[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("tiles", "sheet", "score"))
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--keys", default="50-70")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--broken", default="", help="comma-separated numbers of the broken faces on the sheet")
    args = parser.parse_args(argv)
    if args.step == "tiles":
        tiles(args.paths[0], args.keys)
    elif args.step == "sheet":
        sheet(args.paths[0], args.paths[1:], args.seed)
    else:
        score(args.paths[0], {int(n) for n in args.broken.split(",") if n})
    return 0


if __name__ == "__main__":
    sys.exit(main())
