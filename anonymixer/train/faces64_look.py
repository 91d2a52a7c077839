"""Fit the directions of faces64's code that decide how a drawn face looks: lighting, brightness, the guard's miss, the mouth.

    python -m anonymixer.train.faces64_look --out anonymixer/models/weights/faces64_look.json [--faces 4000] [--seed 0]

faces64's generator (a DCGAN trained on DigiFace-1M's rendered faces) draws many faces that a person
does not take for one once pasted: lit hard from one side (half the face in shadow: a "split"), dark
and featureless (a "blob"), turned to a profile. The keyed mixer fills half of the code from the key,
so it draws those too, whatever the person looks like. This fits, on ``--faces`` codes ``z ~ N(0, I)``
drawn by the packaged generator and judged as the artefact guard judges them (YuNet on the face,
upscaled, on a gray border):

- ``lighting``: the lightness difference of the two cheeks (CIE L*, ``guard.CHEEKS``), the face aligned
  by YuNet's five points to faces64's crop template;
- ``brightness``: their mean lightness;
- ``shortfall``: the guard's miss for a frontal person (``guard.Verdict.shortfall`` with the person's
  head turn 0, at most 5; a face YuNet does not find counts too);
- ``mouth``: how open the mouth is: the cheeks' mean lightness less the darker quarter of the mouth's
  middle (``MOUTH``, between the lips).

Each is a ridge regression on ``z`` (``train.faces64_pose.fit``: the first 80 % of the faces, the
last 20 % measure it, held-out R^2). faces64's steered draws (``face.guard.faces64_steer``,
``guard.steered``) set the code's components along these directions (orthogonalised after the head
turn's) to ``TARGETS``: evenly lit, a little brighter than the prior's mean, well inside the guard's
limits, the mouth as open as on the prior's average face (a person's open-mouthed smile, drawn by this
generator, comes out gaping). Writes ``--out`` (JSON: directions, targets, the fit's figures, the
command). Half a minute on a CPU. The mouth is the weakest fit (held-out R^2 0.265): setting it narrows
the gaping mouths, not every open one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Where faces64's steered draws put their code along each direction (in standard deviations of the prior,
# whose components are N(0, 1)): chosen on generated faces (session 10; benchmarks/RESULTS.md): lit evenly,
# brightness +1 (at 0 and below, many faces are dark and featureless; at +2, washed out), the guard's miss
# -1.5 (-1 and -2 pass the guard alike), the mouth 0 (the prior's mean: half open at most; -1 closes it, -2
# darkens the face too).
TARGETS = {"lighting": 0.0, "brightness": 1.0, "shortfall": -1.5, "mouth": 0.0}
# The mouth's middle, between the lips: (x0, x1, y0, y1) fractions of the crop aligned to faces64's template.
MOUTH = (0.43, 0.57, 0.79, 0.9)
MAX_SHORTFALL = 5.0


def looks(faces_rgb: np.ndarray, template: tuple[tuple[float, float], ...]) -> dict[str, np.ndarray]:
    """``(N, R, R, 3) uint8 RGB`` -> per face: ``found`` (YuNet at least the guard's score), ``lighting``,
    ``brightness``, ``mouth`` (NaN where not found) and ``shortfall``."""
    import cv2

    from ..face.guard import CHEEKS, MIN_SCORE, ArtefactGuard

    guard = ArtefactGuard(template)
    side = faces_rgb.shape[1]
    to = (np.asarray(template, np.float64) * side).astype(np.float32)
    out = {name: np.full(len(faces_rgb), np.nan) for name in ("lighting", "brightness", "shortfall", "mouth")}
    found = np.zeros(len(faces_rgb), bool)
    for i, face in enumerate(faces_rgb):
        verdict = guard.check(face, 0.0)
        out["shortfall"][i] = min(verdict.shortfall, MAX_SHORTFALL)
        score, points = guard.detect(face)
        if points is None or score < MIN_SCORE:
            continue
        matrix, _ = cv2.estimateAffinePartial2D((points * side).astype(np.float32), to)
        if matrix is None:
            continue
        aligned = cv2.warpAffine(face, matrix, (side, side), borderMode=cv2.BORDER_REPLICATE)
        lightness = cv2.cvtColor(aligned.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)[..., 0]
        cheeks = [float(lightness[int(y0 * side):int(y1 * side), int(x0 * side):int(x1 * side)].mean())
                  for x0, x1, y0, y1 in CHEEKS]
        out["lighting"][i], out["brightness"][i] = cheeks[0] - cheeks[1], 0.5 * (cheeks[0] + cheeks[1])
        x0, x1, y0, y1 = MOUTH
        mouth = lightness[int(y0 * side):int(y1 * side), int(x0 * side):int(x1 * side)]
        out["mouth"][i] = out["brightness"][i] - float(np.percentile(mouth, 25))
        found[i] = True
    return {"found": found, **out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anonymixer.train.faces64_look", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the JSON to write")
    parser.add_argument("--faces", type=int, default=4000, help="generated faces to fit on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from ..atomic import write_json
    from ..models.configs import faces64
    from .faces64_pose import fit, generated_faces

    template = faces64().crop_template
    assert template is not None
    codes, faces = generated_faces(args.faces, args.seed)
    measured = looks(faces, template)
    found = measured["found"]
    directions, figures = {}, {}
    for name in TARGETS:
        rows = np.isfinite(measured[name])
        direction, r2 = fit(codes[rows].astype(np.float64), measured[name][rows])
        directions[name] = [round(float(v), 8) for v in direction]
        figures[name] = {"held_out_r2": round(r2, 4), "std": round(float(measured[name][rows].std()), 4),
                         "faces": int(rows.sum())}
    command = "python -m anonymixer.train.faces64_look " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(Path(args.out), {"directions": directions, "targets": TARGETS, "fit": figures, "faces": args.faces,
                                "faces_found": int(found.sum()), "seed": args.seed, "command": command}, indent=1)
    print(f"{int(found.sum())} of {args.faces} faces found; held-out R^2 "
          + ", ".join(f"{name} {figures[name]['held_out_r2']:.3f}" for name in TARGETS) + f"; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
