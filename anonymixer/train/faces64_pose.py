"""Fit the direction of head turn (yaw) in faces64's code, for the artefact guard's pose-kept draws.

    python -m anonymixer.train.faces64_pose --out anonymixer/models/weights/faces64_yaw.json [--faces 3000] [--seed 0]

faces64 draws a face from one 100-d code, so the keyed mixer, which fills half of the code from the
key, also draws a new head pose: a frontal person often gets a turned protected face, which pasted on
the frontal outline shows a split or the generated background down one side. (StyleGAN2's W+ keeps
its coarse layers, where pose lives, from the person.) This fits the yaw direction ``d`` in the code:
``--faces`` codes ``z ~ N(0, I)`` are drawn by the packaged generator, YuNet finds each face (as the
guard looks: upscaled, on a gray border), the turn is ``(nose x - eyes' midpoint x) / interocular``,
and a ridge regression of the turn on ``z`` (the first 80 % of the faces) gives ``d = coef / |coef|``;
the last 20 % measure it (held-out R^2). ``face.guard.redraw_feeds`` keeps the person's component
along ``d`` in faces64's pose-kept draws. Writes ``--out`` (JSON: direction, the fit's figures, the
command). Seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RIDGE = 10.0


def turns(faces_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 64, 64, 3) uint8 RGB`` -> (indices of the faces the guard's YuNet finds at >= its score,
    their turns)."""
    from ..face.guard import MIN_SCORE, ArtefactGuard

    guard = ArtefactGuard(None)
    found, turn = [], []
    for i, face in enumerate(faces_rgb):
        score, points = guard.detect(face)
        if points is None or score < MIN_SCORE:
            continue
        found.append(i)
        turn.append((points[2, 0] - points[:2, 0].mean()) / np.linalg.norm(points[1] - points[0]))
    return np.asarray(found, int), np.asarray(turn, np.float64)


def fit(codes: np.ndarray, turn: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge fit on the first 80 %: (unit direction, R^2 on the last 20 %)."""
    split = int(0.8 * len(turn))
    x, y = codes[:split], turn[:split] - turn[:split].mean()
    coef = np.linalg.solve(x.T @ x + RIDGE * np.eye(codes.shape[1]), x.T @ y)
    predicted = codes[split:] @ coef + turn[:split].mean()
    held = turn[split:]
    r2 = 1.0 - float(((predicted - held) ** 2).sum() / ((held - held.mean()) ** 2).sum())
    return coef / np.linalg.norm(coef), r2


def generated_faces(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` codes ``z ~ N(0, I)`` (numpy's generator seeded ``seed``) ``(N, D) float32`` and the packaged
    generator's faces of them ``(N, 64, 64, 3) uint8 RGB``, drawn 500 at a time."""
    import torch

    from ..models.configs import DCGANConfig, faces64
    from ..models.dcgan import build_faces64_generator, load_dcgan_state

    config = faces64().generator
    assert isinstance(config, DCGANConfig)
    generator = build_faces64_generator(config, load_dcgan_state())
    codes = np.random.default_rng(seed).standard_normal((count, config.nz)).astype(np.float32)
    with torch.no_grad():
        images = np.concatenate([generator(torch.from_numpy(codes[i:i + 500])).numpy()
                                 for i in range(0, count, 500)])
    return codes, np.clip((images.transpose(0, 2, 3, 1) + 1.0) * 127.5, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anonymixer.train.faces64_pose", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the JSON to write")
    parser.add_argument("--faces", type=int, default=3000, help="generated faces to fit on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from ..atomic import write_json

    codes, faces = generated_faces(args.faces, args.seed)
    found, turn = turns(faces)
    direction, r2 = fit(codes[found].astype(np.float64), turn)
    command = "python -m anonymixer.train.faces64_pose " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(Path(args.out), {"direction": [round(float(v), 8) for v in direction], "faces": args.faces,
                                "faces_found": int(len(found)), "turn_std": float(turn.std()),
                                "held_out_r2": r2, "ridge": RIDGE, "seed": args.seed, "command": command}, indent=1)
    print(f"{len(found)} of {args.faces} faces found; turn std {turn.std():.3f}; held-out R^2 {r2:.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
