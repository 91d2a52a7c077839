"""README's demo photos turned by a quarter and a half turn, protected under several keys: how many faces
are protected and how many masked, and the dlib distance of each protected face, turned back, to the
upright original (under 0.6: dlib takes it for her, a leak). Session 8 (``align.dlib_upright``, docs/pasteback.md):

    python benchmarks/experiments/pasteback_head_turn/rotated_faces.py [--keys 0-6]
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from anonymixer.eval.fr import DlibRecognizer
from anonymixer.eval.protocols import eval_key
from anonymixer.face.detect import open_detector
from anonymixer.face.photos import packaged_photo
from anonymixer.face.pipeline import FaceProtector
from anonymixer.face.search import find_faces
from anonymixer.runtime import Protector

TURNS = {"upright": None, "quarter cw": cv2.ROTATE_90_CLOCKWISE, "quarter ccw": cv2.ROTATE_90_COUNTERCLOCKWISE,
         "half": cv2.ROTATE_180}
BACK = {cv2.ROTATE_90_CLOCKWISE: cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE: cv2.ROTATE_90_CLOCKWISE,
        cv2.ROTATE_180: cv2.ROTATE_180}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", default="0-6", help="pasteback-K for K in this range (end excluded)")
    args = parser.parse_args(argv)
    lo, hi = (int(k) for k in args.keys.split("-"))
    detector, recogniser = open_detector("yunet"), DlibRecognizer()
    for name in ("astronaut", "grace_hopper"):
        image = cv2.imread(str(packaged_photo(name)))
        upright = find_faces(detector, image).faces[0]
        original = recogniser.embed(recogniser.align(image, upright.landmarks)[None])[0]
        for label, turn in TURNS.items():
            photo = image if turn is None else cv2.rotate(image, turn)
            protected = masked = 0
            distances = []
            for k in range(lo, hi):
                with Protector("faces64", eval_key(0, f"pasteback-{k}", "*")) as protector:
                    result = FaceProtector(protector, detector).process(photo)
                protected, masked = protected + result.protected, masked + result.masked
                back = result.frame if turn is None else cv2.rotate(result.frame, BACK[turn])
                if result.masked == 0:
                    template = recogniser.embed(recogniser.align(back, upright.landmarks)[None])[0]
                    distances.append(float(np.linalg.norm(template - original)))
            low = f"{min(distances):.3f}" if distances else "-"
            leaks = sum(d < 0.6 for d in distances)
            print(f"{name}, {label}: {protected} protected, {masked} masked over {hi - lo} keys; "
                  f"dlib distance to the upright original, min {low}; under 0.6 (a leak): {leaks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
