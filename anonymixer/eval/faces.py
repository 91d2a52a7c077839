"""The faces of an evaluation set: one sub-folder per identity, each photo detected and aligned twice.

    DATA/alice/001.jpg, DATA/alice/002.jpg, DATA/bob/a.png, ...

Each photo gives one :class:`EvalFace` (the largest detected face): the FFHQ-aligned 256 crop that
our Protector takes, the same face's landmarks *in that crop* (mapped through the alignment
transform), and the FR system's own crop of the original photo. A photo that cannot be read or
has no face is reported by file and skipped.

Detection, FFHQ alignment and the FR systems' 5-point similarity alignment come from
``anonymixer.face`` (YuNet by default; ``face.align``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import AnonymixerError, EvaluationError
from ..face.align import align_face, apply_affine
from ..face.detect import Detector
from ..face.io import IMAGE_SUFFIXES, read_photo

if TYPE_CHECKING:
    from .fr import FaceRecognizer



@dataclass
class EvalFace:
    """One photo's face.

    ``crop``: ``(S, S, 3) uint8 RGB`` FFHQ crop (the Protector's input, S = 256).
    ``crop_landmarks``: ``(5, 2) float64`` the detector's landmarks mapped into ``crop`` pixels.
    ``fr_crop``: ``(s, s, 3) uint8 BGR`` the FR system's alignment of the original photo.
    """

    path: Path
    identity: str
    crop: np.ndarray
    crop_landmarks: np.ndarray
    fr_crop: np.ndarray


@dataclass
class EvalSet:
    """The usable faces, and one line per photo that was skipped."""

    faces: list[EvalFace] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def identities(self) -> np.ndarray:
        """``(N,)`` identity label of each face."""
        return np.array([f.identity for f in self.faces])


def list_photos(data_dir: Path) -> list[tuple[str, Path]]:
    """``(identity, path)`` for every image in ``DATA/<identity>/`` (sorted; nested folders included)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise EvaluationError(f"--data {data_dir}: is a file, not a folder; give a folder with one sub-folder of "
                              "photos per identity (DATA/<identity>/<photo>.jpg)")
    if not data_dir.is_dir():
        raise EvaluationError(f"--data {data_dir}: no such folder; give a folder with one sub-folder per identity")
    photos = [(sub.name, path) for sub in sorted(p for p in data_dir.iterdir() if p.is_dir())
              for path in sorted(sub.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]
    if not photos:
        raise EvaluationError(f"--data {data_dir}: no images found; put each person's photos in their own "
                              "sub-folder (DATA/<identity>/<photo>.jpg)")
    return photos


def load_eval_set(data_dir: str | Path, detector: Detector, fr: FaceRecognizer, crop_size: int = 256,
                  crop_template: np.ndarray | None = None) -> EvalSet:
    """Detect and align the largest face of every photo under ``data_dir`` (see module docstring);
    ``crop_template``: the model's (``ModelInfo.crop_template``), None for FFHQ alignment."""
    result = EvalSet()
    photos = list_photos(Path(data_dir))
    for identity, path in tqdm(photos, desc="faces", unit="photo", disable=None):
        try:
            image, _ = read_photo(path)  # (H, W, 3) uint8 BGR, whatever the file's channels
            faces = detector.detect(image)
            if not faces:
                result.skipped.append(f"{path}: no face detected")
                continue
            face = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
            crop_bgr, matrix = align_face(image, face.landmarks, crop_size, crop_template)
            result.faces.append(EvalFace(
                path=path, identity=identity, crop=np.ascontiguousarray(crop_bgr[..., ::-1]),
                crop_landmarks=apply_affine(matrix, face.landmarks), fr_crop=fr.align(image, face.landmarks)))
        except (AnonymixerError, ValueError, RuntimeError, cv2.error) as exc:  # dlib raises RuntimeError
            result.skipped.append(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}")
    return result
