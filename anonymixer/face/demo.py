"""``anonymixer demo``: protect the photos that ship with scikit-image and matplotlib, with a fresh
key that lives only in memory, and write them side by side (original | protected)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .io import read_photo, write_image
from .pipeline import FaceProtector, FrameResult
from .photos import PACKAGED_PHOTOS, packaged_photo

DEMO_PHOTOS = tuple(PACKAGED_PHOTOS)  # astronaut, grace_hopper
ROW_HEIGHT = 512


@dataclass
class DemoResult:
    """The side-by-side image ``path`` and, per photo name, what the pipeline did."""

    path: Path
    results: dict[str, FrameResult] = field(default_factory=dict)


def _label(image: np.ndarray, text: str) -> None:
    """Write ``text`` in white on a dark box in the top-left corner, in place."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.7
    (width, height), baseline = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(image, (0, 0), (width + 16, height + baseline + 12), (32, 32, 32), thickness=-1)
    cv2.putText(image, text, (8, height + 6), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def side_by_side(pairs: list[tuple[np.ndarray, np.ndarray]], caption: str = "protected") -> np.ndarray:
    """One ``uint8 BGR`` image: a row per (original, protected) pair, each row ``ROW_HEIGHT`` high."""
    rows = []
    for original, protected in pairs:
        scale = ROW_HEIGHT / original.shape[0]
        size = (round(original.shape[1] * scale), ROW_HEIGHT)
        left = cv2.resize(original, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(protected, size, interpolation=cv2.INTER_AREA)
        _label(left, "original")
        _label(right, caption)
        rows.append(np.hstack([left, right]))
    width = max(row.shape[1] for row in rows)
    rows = [cv2.copyMakeBorder(row, 0, 0, 0, width - row.shape[1], cv2.BORDER_CONSTANT, value=(64, 64, 64))
            for row in rows]
    return np.vstack(rows)


def run_demo(face_protector: FaceProtector, out_dir: Path, photos: tuple[str, ...] = DEMO_PHOTOS) -> DemoResult:
    """Protect each packaged photo and write ``out_dir/demo.png`` (rows of original | protected)."""
    pairs = []
    demo = DemoResult(out_dir / "demo.png")
    for name in photos:
        image, _ = read_photo(packaged_photo(name))
        result = face_protector.process(image)
        demo.results[name] = result
        pairs.append((image, result.frame))
    caption = "protected (random weights)" if face_protector.protector.info.is_random else "protected"
    write_image(demo.path, side_by_side(pairs, caption))
    return demo
