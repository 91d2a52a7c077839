"""Templates: one photo -> one cancelable template ``(d,) float32`` of unit norm, under one key.

Two kinds share the key file and its derivation (``anonymixer.keys``, ``anonymixer.keymaterial``):

- ``face`` (the paper's): the recogniser's embedding of the *protected* face (encoder -> keyed
  mixer -> generator). Any unmodified recogniser can match it; its utility is the generator's.
- ``embedding``: the keyed ``project`` map applied to the recogniser's embedding of the real
  face, ``t = x P Q^T`` (``keymaterial.template_projection``: a key-chosen ``rank``-dimensional
  subspace kept, then rotated; streams of its own, apart from the mixer's). The real embedding
  ``x`` exists only in memory, during one call. A protected face is still made at enrolment, for
  display only.

Scores are cosines of templates (dot products of unit vectors), for both kinds and every
recogniser (dlib's Euclidean distance between its raw descriptors, whose norms are all about 1.4,
orders pairs almost as the cosine does).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import FaceCountError, TerminalError, printable
from ..eval.fr import FaceRecognizer, open_recognizer, unit_rows
from ..face.align import align_face, apply_affine, resize_affine
from ..face.detect import Detector, Face, open_detector
from ..face.io import read_photo
from ..keymaterial import template_projection
from ..keys import Key
from ..models.bundle import ModelBundle, bundle_digest, resolve_spec
from ..runtime.protector import Protector, output_to_faces

KINDS = ("face", "embedding")
DEFAULT_KIND = "embedding"        # measured: benchmarks/terminal_templates.py, docs/terminal.md
DEFAULT_FR = "sface"
DEFAULT_MODEL = "faces64"
# embedding kind: kept dimensions of the recogniser's d (measured: benchmarks/terminal_templates.py).
DEFAULT_RANK_FRACTION = 0.5
FR_SIDE = 256   # protected faces are resized to this before the recogniser aligns them (64 px is too small)


def read_image_bytes(data: bytes, name: str) -> np.ndarray:
    """An uploaded photo as ``(H, W, 3) uint8 BGR``, through the same reader as ``protect``
    (format, size, truncation and frame checks); ``InputImageError`` names ``name`` in one line."""
    image, _ = read_photo(printable(name), data)
    return image


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise TerminalError(f"unknown template kind {kind!r}: choose {' or '.join(KINDS)}")
    return kind


def template_version(kind: str, rank: int | None) -> str:
    """What a template's numbers mean, stored with the store: a change makes old templates useless."""
    return "face/v1 cosine" if kind == "face" else f"embedding/v1 unit rank {rank} cosine"


def model_id(bundle: ModelBundle) -> str:
    return f"random:{bundle.config.name}@{bundle.random_seed}" if bundle.is_random else bundle.config.name


@dataclass(frozen=True)
class Template:
    """One photo's template ``(d,) float32`` (unit norm) and, when asked, its protected face
    ``(R, R, 3) uint8 RGB`` (generated: never the original)."""

    vector: np.ndarray
    protected_face: np.ndarray | None


class TemplateMaker:
    """Detector + recogniser + generator under one key: photos in, templates out.

    Model calls are serialised by a lock (one ``TemplateMaker`` may serve several threads).
    """

    def __init__(self, key: Key, *, kind: str = DEFAULT_KIND, fr: str = DEFAULT_FR, model: str = DEFAULT_MODEL,
                 detector: str | None = None, salt: bytes | str | None = None, rank: int | None = None) -> None:
        self.kind = check_kind(kind)
        self.fingerprint = key.fingerprint
        self.detector: Detector = open_detector(detector)
        self.fr: FaceRecognizer = open_recognizer(fr)
        self.fr_id = self.fr.name
        bundle = resolve_spec(model)
        self.model_id = model_id(bundle)
        self.model_digest = bundle_digest(bundle)
        self.protector = Protector(bundle, key, salt=salt)
        self.dim = int(self.fr.embed(np.zeros((1, self.fr.input_size, self.fr.input_size, 3), np.uint8)).shape[1])
        self.rank: int | None = None
        self.projection: np.ndarray | None = None
        if kind == "embedding":
            self.rank = rank if rank is not None else max(1, round(self.dim * DEFAULT_RANK_FRACTION))
            self.projection = template_projection(key, salt, self.dim, self.rank).astype(np.float32)
        self.version = template_version(kind, self.rank)
        self._lock = threading.Lock()

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face YuNet (or the chosen detector) finds, largest first."""
        with self._lock:
            found = self.detector.detect(image)
        return sorted(found, key=lambda f: -float(f.box[2] * f.box[3]))

    def enrolment_face(self, image: np.ndarray, source: str) -> Face:
        """The one face of an enrolment photo; ``FaceCountError`` for none or several."""
        found = self.faces(image)
        if len(found) != 1:
            what = "no face" if not found else f"{len(found)} faces"
            raise FaceCountError(f"{printable(source)}: {what} found; an enrolment photo must show exactly one face")
        return found[0]

    def probe_face(self, image: np.ndarray, source: str) -> Face:
        """The largest face of a probe photo; ``FaceCountError`` if there is none."""
        found = self.faces(image)
        if not found:
            raise FaceCountError(f"{printable(source)}: no face found")
        return found[0]

    def template(self, image: np.ndarray, face: Face, display: bool = False) -> Template:
        """The template of ``face`` in ``image (H, W, 3) uint8 BGR``; with ``display`` (or for the
        ``face`` kind, which needs it) also its protected face."""
        with self._lock:
            protected = None
            if display or self.kind == "face":
                crop, matrix = align_face(image, face.landmarks, self.protector.input_size,
                                           self.protector.crop_template)
                protected = self.protector.protect(np.ascontiguousarray(crop[..., ::-1])[None])[0]
            if self.kind == "face":
                assert protected is not None
                big = cv2.resize(np.ascontiguousarray(protected[..., ::-1]), (FR_SIDE, FR_SIDE),
                                 interpolation=cv2.INTER_CUBIC)
                landmarks = apply_affine(resize_affine(matrix, self.protector.input_size, FR_SIDE), face.landmarks)
                embedding = self.fr.embed(self.fr.align(big, landmarks)[None])
                vector = unit_rows(embedding.astype(np.float32))[0]
            else:
                assert self.projection is not None
                embedding = self.fr.embed(self.fr.align(image, face.landmarks)[None])
                vector = project_embedding(embedding, self.projection)[0]
        return Template(vector.astype(np.float32), protected)

    def aligned_templates(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Templates ``(N, d) float32`` of faces already aligned at the model's crop template
        (``(N, S, S, 3) uint8 RGB``, S the model's input size): generated faces, say."""
        template = self.protector.crop_template
        if template is None:
            raise TerminalError(f"model {self.model_id} has no crop template: synthetic faces cannot be aligned")
        landmarks = template * FR_SIDE - 0.5
        out = []
        with self._lock:
            for start in range(0, len(crops_rgb), 32):
                faces = crops_rgb[start:start + 32]
                if self.kind == "face":
                    faces = self.protector.protect(faces)
                big = [cv2.resize(np.ascontiguousarray(f[..., ::-1]), (FR_SIDE, FR_SIDE), interpolation=cv2.INTER_CUBIC)
                       for f in faces]
                embeddings = self.fr.embed(np.stack([self.fr.align(b, landmarks) for b in big]))
                out.append(unit_rows(embeddings.astype(np.float32)) if self.projection is None
                           else project_embedding(embeddings, self.projection))
        return np.concatenate(out).astype(np.float32)

    def synthetic_faces(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` generated faces ``(n, S, S, 3) uint8 RGB`` of different synthetic identities (codes
        ``z ~ N(0, I)`` from ``seed`` through the model's mapping and generator)."""
        backend, size = self.protector.backend, self.protector.input_size
        z = np.random.default_rng(seed).standard_normal((n, backend.info.style_dim)).astype(np.float32)
        faces = []
        with self._lock:
            for start in range(0, n, 32):
                w = backend.stage("mapping").run({"z": z[start:start + 32]})["w_key"]
                faces.append(output_to_faces(backend.stage("generator").run({"w_prot": w})["image"]))
        drawn = np.concatenate(faces)
        if drawn.shape[1] != size:
            drawn = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in drawn])
        return drawn

    def synthetic_templates(self, n: int, seed: int = 0) -> np.ndarray:
        """Templates ``(n, d)`` of ``n`` synthetic identities (impostors of each other)."""
        return self.aligned_templates(self.synthetic_faces(n, seed))

    def close(self) -> None:
        self.protector.close()


def project_embedding(embeddings: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """``embedding`` templates: ``(N, d)`` recogniser embeddings -> ``(N, d) float32`` unit rows of
    ``unit(e) P Q^T`` (``projection = P Q^T``, ``keymaterial.template_projection``)."""
    x = unit_rows(np.asarray(embeddings, np.float32))
    return unit_rows(x @ projection).astype(np.float32)


def face_png(face_rgb: np.ndarray) -> bytes:
    """A protected face ``(R, R, 3) uint8 RGB`` as PNG bytes (for display)."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(face_rgb[..., ::-1]))
    if not ok:
        raise TerminalError("cannot encode the protected face as PNG")
    return data.tobytes()
