"""What every row is fed: seeded aligned faces, the benchmark key, and frames with B faces.

All of it is fixed by seeds and packaged photos, so two runs (or two rows) see the same pixels.
"""

from __future__ import annotations

import hashlib
from typing import Any

import cv2
import numpy as np

from ..keys import Key

FACES_SEED = 2025
TILE = 512   # frame tile side: one face per tile


def bench_key() -> Key:
    """A fixed, public key (not a secret: anyone can rebuild it), so runs are repeatable."""
    return Key(hashlib.sha256(b"anonymixer bench key: public, for latency runs only").digest())


def seeded_faces(n: int, size: int, seed: int = FACES_SEED) -> np.ndarray:
    """``(n, 3, size, size) float32`` in [-1, 1]: smooth seeded images (a coarse random field,
    upsampled), closer to a photo's spectrum than white noise. Timing does not depend on pixels;
    accuracy (PSNR) needs the same inputs in every row, which the seed gives."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1.0, 1.0, (n, 3, 8, 8)).astype(np.float32)
    out = np.stack([cv2.resize(img.transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_CUBIC)
                    for img in coarse]).transpose(0, 3, 1, 2)
    out += rng.normal(0.0, 0.05, out.shape).astype(np.float32)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def face_tiles() -> list[np.ndarray]:
    """The two packaged photos (astronaut, Grace Hopper) as ``(512, 512, 3) uint8 BGR`` tiles."""
    from ..face.io import read_image
    from ..face.photos import packaged_photo

    tiles = []
    for name in ("astronaut", "grace_hopper"):
        image = read_image(packaged_photo(name))
        height, width = image.shape[:2]
        side = min(height, width)          # centre square, then to the tile size
        top, left = (height - side) // 2, (width - side) // 2
        tiles.append(cv2.resize(image[top:top + side, left:left + side], (TILE, TILE), interpolation=cv2.INTER_AREA))
    return tiles


def frame_with_faces(n: int, tiles: list[np.ndarray]) -> np.ndarray:
    """``(H, W, 3) uint8 BGR``: ``n`` photo tiles (alternating) on a near-square grid, one face each."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    frame = np.zeros((rows * TILE, cols * TILE, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        frame[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = tiles[i % len(tiles)]
    return frame


def aligned_faces(detector: Any, frame: np.ndarray, n: int, size: int,
                  template: np.ndarray | None = None) -> np.ndarray:
    """``(n, 3, size, size) float32`` in [-1, 1]: the faces of ``frame`` in reading order, aligned
    as the frame pipeline aligns them (FFHQ, or the model's crop ``template``); seeded faces fill in
    if the detector finds fewer than ``n``."""
    from ..face.align import align_face
    from ..runtime.protector import faces_to_input

    found = sorted(detector.detect(frame), key=lambda f: (int(f.box[1]) // TILE, float(f.box[0])))[:n]
    crops = [cv2.cvtColor(align_face(frame, face.landmarks, size, template)[0], cv2.COLOR_BGR2RGB) for face in found]
    faces = faces_to_input(np.stack(crops), size) if crops else np.zeros((0, 3, size, size), np.float32)
    if len(faces) < n:
        faces = np.concatenate([faces, seeded_faces(n - len(faces), size)])
    return np.ascontiguousarray(faces, dtype=np.float32)


VIDEO_SIZE = (640, 480)   # (width, height) of the whole-frame stream rows


def video_frame(tiles: list[np.ndarray], size: tuple[int, int] = VIDEO_SIZE) -> np.ndarray:
    """``(480, 640, 3) uint8 BGR``: one face (the astronaut tile at 400 px) on a gray 640x480 frame."""
    width, height = size
    frame = np.full((height, width, 3), 96, np.uint8)
    side = min(400, height, width)
    face = cv2.resize(tiles[0], (side, side), interpolation=cv2.INTER_AREA)
    top, left = (height - side) // 2, (width - side) // 2
    frame[top:top + side, left:left + side] = face
    return frame
