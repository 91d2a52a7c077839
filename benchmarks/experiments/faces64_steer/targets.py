"""Where faces64's steered draws set lighting, brightness and the guard's miss (session 10): the guard on generated faces.

    python benchmarks/experiments/faces64_steer/targets.py [--faces 800] [--sheet out/steer_targets.png]

``--faces`` codes ``z ~ N(0, I)`` (seed 123) stand for mixed codes: each is steered as faces64's draws 4-7
are (``face.guard.steer_of`` on the shipped directions: the head turn, then ``faces64_look.json``'s
lighting, brightness, the guard's miss and the mouth), with the head turn set to 0 (a frontal person) and the others
to the targets of each row, rescaled to the prior's radius (as the mixer's radius guard does), drawn by
the packaged generator and judged by the artefact guard for a frontal person (YuNet's score, landmarks,
cheeks, head turn). Prints the share each row passes; ``--sheet`` writes the first 32 faces of four rows
(head turn only; the shipped targets; brightness 0; brightness 2) one under the other, to look at. The
rows after the shipped one change one target of it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ROWS = [  # (label, {direction: target}); the head turn is always 0
    ("none (the code as drawn)", None),
    ("head turn only (session 8-9)", {}),
    ("+ lighting 0, brightness 1", {"lighting": 0.0, "brightness": 1.0}),
    ("+ the guard's miss -1.5", {"lighting": 0.0, "brightness": 1.0, "shortfall": -1.5}),
    ("+ the mouth 0 (shipped)", {"lighting": 0.0, "brightness": 1.0, "shortfall": -1.5, "mouth": 0.0}),
    ("the mouth -1", {"lighting": 0.0, "brightness": 1.0, "shortfall": -1.5, "mouth": -1.0}),
    ("all at 0 (the prior's mean)", {"lighting": 0.0, "brightness": 0.0, "shortfall": 0.0}),
    ("brightness 0.5", {"lighting": 0.0, "brightness": 0.5, "shortfall": -1.5, "mouth": 0.0}),
    ("brightness 0", {"lighting": 0.0, "brightness": 0.0, "shortfall": -1.5, "mouth": 0.0}),
    ("brightness 1.5", {"lighting": 0.0, "brightness": 1.5, "shortfall": -1.5, "mouth": 0.0}),
    ("brightness 2", {"lighting": 0.0, "brightness": 2.0, "shortfall": -1.5, "mouth": 0.0}),
    ("the guard's miss -1", {"lighting": 0.0, "brightness": 1.0, "shortfall": -1.0, "mouth": 0.0}),
    ("the guard's miss -2", {"lighting": 0.0, "brightness": 1.0, "shortfall": -2.0, "mouth": 0.0}),
]
SHEET_ROWS = (1, 4, 8, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=800)
    parser.add_argument("--sheet", type=Path, default=None)
    args = parser.parse_args()
    import torch

    from anonymixer.face.guard import LOOK_FILE, ArtefactGuard, faces64_yaw, steer_of
    from anonymixer.face.io import write_image
    from anonymixer.models.configs import faces64
    from anonymixer.models.dcgan import build_faces64_generator, load_dcgan_state

    model = faces64()
    generator = build_faces64_generator(model.generator, load_dcgan_state())
    guard = ArtefactGuard(model.crop_template)
    look = json.loads(LOOK_FILE.read_text())["directions"]
    codes = np.random.default_rng(123).standard_normal((args.faces, 100))
    radius = np.sqrt(codes.shape[1])
    sheets = []
    for n, (label, targets) in enumerate(ROWS):
        steered = codes
        if targets is not None:
            names = list(targets)
            steer = steer_of([faces64_yaw(), *(np.asarray(look[k]) for k in names)], [False] * (1 + len(names)),
                             [0.0, *targets.values()])
            steered = codes - (codes @ steer.basis) @ steer.basis.T + steer.target @ steer.basis.T
        steered = steered * (radius / np.linalg.norm(steered, axis=1, keepdims=True))
        with torch.no_grad():
            images = generator(torch.from_numpy(steered.astype(np.float32))).numpy()
        faces = np.clip((images.transpose(0, 2, 3, 1) + 1.0) * 127.5, 0, 255).astype(np.uint8)
        verdicts = [guard.check(face, 0.0) for face in faces]
        print(f"| {label} | {np.mean([v.passed for v in verdicts]):.1%} | {np.mean([v.turn > 0.1 for v in verdicts]):.1%} |",
              flush=True)
        if n in SHEET_ROWS:
            tiles = [cv2.resize(np.ascontiguousarray(f[..., ::-1]), (96, 96), interpolation=cv2.INTER_CUBIC)
                     for f in faces[:32]]
            sheets.append(np.vstack([np.hstack(tiles[k:k + 16]) for k in (0, 16)]))
    if args.sheet is not None:
        write_image(args.sheet, np.vstack(sheets))
        print(f"wrote {args.sheet}: rows of 2 x 16 faces, " + "; ".join(ROWS[n][0] for n in SHEET_ROWS))


if __name__ == "__main__":
    main()
