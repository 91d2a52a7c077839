"""Where calibration faces come from, and the inputs each graph sees when the pipeline runs on them."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ExportError, InputImageError
from ..face.io import IMAGE_SUFFIXES, read_image
from ..keymaterial import key_material
from ..keys import Key
from .graphs import GraphSet

log = logging.getLogger("anonymixer.calibration")

MAX_FOLDER_IMAGES = 256  # more rarely moves min/max or histograms, and calibration time is linear


@dataclass
class CalibrationSet:
    """Calibration faces ``(N, 3, S, S) float32 RGB in [-1, 1]`` and where they came from."""

    faces: np.ndarray
    source: str                       # "folder" or "synthetic"
    folder: str | None = None
    seed: int | None = None
    skipped: list[str] = field(default_factory=list)  # one line per unusable file

    def describe(self) -> dict[str, Any]:
        """For the manifest: source, folder or seed, sample count, the first skipped files."""
        return {"source": self.source, "folder": self.folder, "seed": self.seed, "samples": len(self.faces),
                "skipped": len(self.skipped), "skipped_examples": self.skipped[:5]}


def folder_faces(folder: str | os.PathLike[str], size: int = 256,
                 limit: int = MAX_FOLDER_IMAGES) -> CalibrationSet:
    """Aligned face images of ``folder`` (searched recursively, sorted, at most ``limit``).

    Any size is accepted: a centred square crop resized to ``size``; gray and BGRA images are made
    RGB. Unreadable files are skipped (listed in ``skipped``). Raises a one-line ``ExportError``
    when the folder is missing or holds no usable image.
    """
    root = Path(folder)
    if not root.exists():
        raise ExportError(f"{root}: no such calibration folder; pass a folder of aligned face images "
                          "with --calib, or use --calib-synthetic N")
    if not root.is_dir():
        raise ExportError(f"{root}: --calib needs a folder of aligned face images, not a file")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    faces: list[np.ndarray] = []
    skipped: list[str] = []
    for path in paths:
        if len(faces) >= limit:
            break
        try:
            faces.append(_to_input(read_image(path), size))
        except InputImageError as exc:
            skipped.append(str(exc))
    if not faces:
        found = (f"{len(paths)} image file(s), none readable (e.g. {skipped[0]})" if skipped
                 else f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        raise ExportError(f"{root}: no usable images for calibration: {found}")
    for line in skipped:
        log.warning("calibration: skipped %s", line)
    return CalibrationSet(np.stack(faces), "folder", folder=str(root), skipped=skipped)


def synthetic_faces(graphs: GraphSet, n: int, seed: int = 1,
                    on_chunk: Callable[[int], object] | None = None) -> CalibrationSet:
    """``n`` faces drawn by the model itself: ``z ~ N(0, I) -> mapping -> generator -> resize``.

    Uses the FP32 graphs ``graphs``; ``seed`` makes the set repeatable. Shape ``(n, 3, S, S)``
    with ``S`` the encoder's input size. ``on_chunk(k)`` reports progress (k faces drawn).
    """
    if n < 1:
        raise ExportError(f"--calib-synthetic needs at least 1 sample, got {n}")
    data = graphs.manifest.data
    z = np.random.default_rng(seed).standard_normal((n, int(data["style_dim"]))).astype(np.float32)
    images = graphs.run("generator", {"w_prot": graphs.run("mapping", {"z": z})}, on_chunk=on_chunk)
    faces = resize_faces(images, int(data["input_size"]))
    return CalibrationSet(faces, "synthetic", seed=seed)


def stage_feeds(graphs: GraphSet, faces: np.ndarray, seed: int = 2,
                on_chunk: Callable[[int], object] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The inputs every graph sees when the FP32 pipeline protects ``faces`` under a test key.

    ``{"encoder": {"face"}, "mapping": {"z"}, "mixer": {"w_real", "key_matrix", "key_offset"},
    "generator": {"w_prot"}}``, float32, ``(N, ...)`` but the key material (one key, derived from
    ``seed``, in the folder's mixer mode); ``z`` are random codes. ``on_chunk(k)`` reports progress
    (k faces encoded).
    """
    info = graphs.manifest.model_info()
    z = np.random.default_rng(seed).standard_normal((len(faces), info.style_dim)).astype(np.float32)
    key = Key(hashlib.sha256(f"anonymixer calibration key {seed}".encode()).digest())
    material = key_material(key, b"calibration", info.mixer_mode, info.stats(), info.n_latent,
                            mapping=GraphMapping(graphs), rank=info.project_rank).feeds()
    w_real = graphs.run("encoder", {"face": faces}, on_chunk=on_chunk)
    w_prot = graphs.run("mixer", {"w_real": w_real, **material})
    return {"encoder": {"face": faces}, "mapping": {"z": z}, "mixer": {"w_real": w_real, **material},
            "generator": {"w_prot": w_prot}}


class GraphMapping:
    """The mapping graph of a ``GraphSet`` behind the runner protocol (for ``key_material``)."""

    def __init__(self, graphs: GraphSet) -> None:
        self.graphs = graphs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w_key": self.graphs.run("mapping", feeds)}


def resize_faces(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, 3, R, R)`` float images -> ``(N, 3, size, size)`` float32, clipped to [-1, 1]."""
    images = np.clip(images, -1.0, 1.0).astype(np.float32)
    if images.shape[-1] == size:
        return images
    interp = cv2.INTER_AREA if images.shape[-1] > size else cv2.INTER_CUBIC
    out = [cv2.resize(img.transpose(1, 2, 0), (size, size), interpolation=interp) for img in images]
    return np.clip(np.stack(out).transpose(0, 3, 1, 2), -1.0, 1.0).astype(np.float32)


def _to_input(image: np.ndarray, size: int) -> np.ndarray:
    """A decoded image (gray, BGR or BGRA uint8) -> ``(3, size, size) float32 RGB in [-1, 1]``."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top:top + side, left:left + side]
    if side != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return (rgb.transpose(2, 0, 1).astype(np.float32) / 127.5) - 1.0
