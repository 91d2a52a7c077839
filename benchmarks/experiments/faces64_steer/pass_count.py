"""How many of faces64's draws the artefact guard passes for README's demo photos: steered, head turn only, as drawn.

    python benchmarks/experiments/faces64_steer/pass_count.py --keys 0-6     # the test's keys
    python benchmarks/experiments/faces64_steer/pass_count.py --keys 6-12
    python benchmarks/experiments/faces64_steer/pass_count.py --keys 12-18

For each photo and evaluation key ``eval_key(0, "steer-K", "*")``, the key's four draws (its own and the
three reflections, ``guard.redraw_feeds``) as drawn, with the person's head turn kept only (session 8-9's
draws 4-7) and steered (``guard.faces64_steer``, draws 4-7 now), each judged by the guard with the
person's head turn (as ``test_faces64s_steered_draws_are_faces_the_guard_passes_far_more_often_than_with_the_head_turn_alone``).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", default="0-6", help="K from-to (to excluded)")
    args = parser.parse_args()
    first, last = (int(k) for k in args.keys.split("-"))
    from anonymixer.eval.protocols import eval_key
    from anonymixer.face.align import align_face
    from anonymixer.face.detect import YuNetDetector
    from anonymixer.face.guard import ArtefactGuard, faces64_steer, faces64_yaw, head_turn, redraw_feeds, steer_of, steered
    from anonymixer.face.io import read_image
    from anonymixer.face.photos import packaged_photo
    from anonymixer.runtime import Protector

    detector = YuNetDetector()
    turn_only = steer_of([faces64_yaw()], [True], [0.0])
    passed = {"as drawn": 0, "head turn only": 0, "steered": 0}
    draws = 0
    for name in ("astronaut", "grace_hopper"):
        frame = read_image(packaged_photo(name))
        face = detector.detect(frame)[0]
        for k in range(first, last):
            with Protector("faces64", eval_key(0, f"steer-{k}", "*")) as protector:
                aligned, _ = align_face(frame, face.landmarks, protector.input_size, protector.crop_template)
                guard = ArtefactGuard(protector.crop_template)
                code = protector.encode(np.ascontiguousarray(aligned[..., ::-1])[None])
                for feeds in [protector.key_feeds, *redraw_feeds(protector)[:3]]:
                    draws += 1
                    for label, ready in (("as drawn", feeds), ("head turn only", steered(feeds, turn_only)),
                                         ("steered", steered(feeds, faces64_steer()))):
                        passed[label] += guard.check(protector.render(code, ready)[0], head_turn(face.landmarks)).passed
    print(f"keys {first}-{last - 1}, {draws} draws: " + ", ".join(f"{label} {n}" for label, n in passed.items()))


if __name__ == "__main__":
    main()
