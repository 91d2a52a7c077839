"""How many faces of the paste-back photo set get no draw that the artefact guard passes (the nearest
of the failing draws is kept), per evaluation key; the identity check off, so that only the guard
decides. RESULTS ("Paste-back realism", faces64's pose-kept draws) counts it before and after the
pose-kept draws:

    python benchmarks/experiments/pasteback_pose_draws/count_nearest.py            # now: 0 / 0 / 0
    git stash; git checkout 79c59ee -- anonymixer/face/guard.py anonymixer/face/draws.py
    python benchmarks/experiments/pasteback_pose_draws/count_nearest.py            # before: 12 / 0 / 0
    git checkout HEAD -- anonymixer/face/guard.py anonymixer/face/draws.py; git stash pop

Needs the photos of ``benchmarks/pasteback_realism.py`` in ``--photos`` (it fetches them).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pasteback_realism import _read, collect_photos  # noqa: E402

from anonymixer.eval.protocols import eval_key  # noqa: E402
from anonymixer.face.detect import open_detector  # noqa: E402
from anonymixer.face.pipeline import FaceProtector  # noqa: E402
from anonymixer.runtime import Protector  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--keys", type=int, default=3)
    args = parser.parse_args()
    photos, detector = collect_photos(Path(args.photos)), open_detector("yunet")
    for k in range(args.keys):
        faces = turned_down = nearest = 0
        with Protector("faces64", eval_key(0, f"pasteback-{k}", "*")) as protector:
            face_protector = FaceProtector(protector, detector, identity_check=False)
            for photo in photos:
                result = face_protector.process(_read(photo.path))
                faces += result.protected
                turned_down += sum("artefact guard" in note for note in result.notes)
                nearest += sum("kept the nearest" in note for note in result.notes)
        print(f"key{k}: faces {faces}, first draw turned down {turned_down}, none passed (nearest kept) {nearest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
