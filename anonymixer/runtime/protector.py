"""The Protector: aligned faces in, protected faces out, on any backend.

    protector = Protector("random:tiny", load_key("my.key"))
    protected = protector.protect(faces)          # (B, 256, 256, 3) uint8 RGB -> (B, R, R, 3) uint8
    for out in protector.protect_many(batches, inflight=3):   # a stream of batches, in input order
        ...

    Protector("export/ffhq", key, backend="ort")              # ONNX folder from `anonymixer export`
    Protector("engines/ffhq", key, backend="trt")             # engine folder from `anonymixer build`

The key material (the mixer's ``key_matrix`` and ``key_offset``, ``anonymixer.keymaterial``) is
computed once, when the Protector is made; every frame then runs encoder -> mixer -> generator.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import BackendError, InputImageError
from ..keymaterial import key_material
from ..keys import Key
from .base import FRAME_STAGES, Backend
from .stream import FramePipeline, ThreadPipeline, in_input_order

BACKENDS = ("torch", "ort", "trt")


def open_backend(name: str, model: Any, **options: Any) -> Backend:
    """Open backend ``name`` on ``model``.

    ``torch``: a bundle or model SPEC; ``ort``: an export folder (``anonymixer export``);
    ``trt``: an engine folder (``anonymixer build``). Options go to the backend's constructor
    (``TorchBackend``, ``OrtBackend``, ``TrtBackend``: device, output_resolution, precision, ...).
    Backends are imported only when opened, so TensorRT and CUDA are never imported for CPU work.
    """
    if name == "torch":
        try:
            from .torch import TorchBackend
        except ImportError:
            raise BackendError("the torch backend needs PyTorch: pip install 'anonymixer[export]' "
                               "(with the torch build for your platform)") from None
        return TorchBackend(model, **options)
    if name == "ort":
        try:
            from .ort import OrtBackend
        except ModuleNotFoundError as exc:
            if exc.name != "onnxruntime":
                raise
            from .doctor import PIP_ORT

            raise BackendError(f"the ort backend needs ONNX Runtime: {PIP_ORT}") from None

        return OrtBackend(model, **options)
    if name == "trt":
        from .trt import TrtBackend

        return TrtBackend(model, **options)
    raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


def faces_to_input(faces: np.ndarray, size: int) -> np.ndarray:
    """``(B, size, size, 3) uint8 RGB -> (B, 3, size, size) float32 in [-1, 1]``."""
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or faces.shape[1:] != (size, size, 3) or faces.dtype != np.uint8:
        raise InputImageError(f"aligned faces must be uint8 RGB of shape (B, {size}, {size}, 3); "
                              f"got {faces.dtype} {tuple(faces.shape)}")
    return (faces.transpose(0, 3, 1, 2).astype(np.float32) / 127.5) - 1.0


def output_to_faces(image: np.ndarray) -> np.ndarray:
    """``(B, 3, R, R) float32 ~[-1, 1] -> (B, R, R, 3) uint8 RGB`` (clipped, rounded)."""
    pixels = np.clip((image + 1.0) * 127.5, 0.0, 255.0)
    return np.rint(pixels).astype(np.uint8).transpose(0, 2, 3, 1)


class Protector:
    """Replace aligned faces by protected faces under one key.

    ``model`` is what the backend loads (for ``torch``: a SPEC, bundle path or ``random:NAME[@seed]``,
    or a loaded ``ModelBundle``); ``backend`` a name or an opened ``Backend`` (then ``model`` is
    ignored). ``salt`` is the deployment salt
    (default: ``$ANONYMIXER_SALT`` or the built-in one). ``last_timings_ms`` holds the wall time of
    each stage in the latest call.
    """

    def __init__(self, model: Any, key: Key, *, backend: str | Backend = "torch",
                 salt: bytes | str | None = None, **backend_options: Any) -> None:
        self.backend = open_backend(backend, model, **backend_options) if isinstance(backend, str) else backend
        self.info = self.backend.info
        self.fingerprint = key.fingerprint
        self.input_size = self.info.input_size
        # Where the model wants the landmarks in its crop ((5, 2) fractions), or None: FFHQ alignment.
        self.crop_template = np.array(self.info.crop_template, np.float64) if self.info.crop_template else None
        self.key_material = key_material(key, salt, self.info.mixer_mode, self.info.stats(), self.info.n_latent,
                                         mapping=self.backend.stage("mapping"), rank=self.info.project_rank)
        self.key_feeds = self.key_material.feeds()
        self.last_timings_ms: dict[str, float] = {}

    def __repr__(self) -> str:
        return (f"Protector(model={self.info.description!r}, key={self.fingerprint}, "
                f"backend={self.backend.describe()!r})")

    def protect_tensor(self, face: np.ndarray, key_feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """``(B, 3, 256, 256) float32 in [-1, 1] -> (B, 3, R, R) float32`` protected images.

        ``key_feeds``: other mixer feeds derived from this key (the artefact guard's mirrored draw,
        ``face.guard.mirrored_feeds``); default: the key's own."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        w_real = self.backend.stage("encoder").run({"face": face})["w_real"]
        t1 = time.perf_counter()
        feeds = self.key_feeds if key_feeds is None else key_feeds
        w_prot = self.backend.stage("mixer").run({"w_real": w_real, **feeds})["w_prot"]
        t2 = time.perf_counter()
        image = self.backend.stage("generator").run({"w_prot": w_prot})["image"]
        t3 = time.perf_counter()
        for stage, (a, b) in zip(FRAME_STAGES, ((t0, t1), (t1, t2), (t2, t3))):
            timings[stage] = (b - a) * 1000.0
        self.last_timings_ms = timings
        return image

    def protect(self, faces: np.ndarray, key_feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """``(B, 256, 256, 3) uint8 RGB`` aligned faces -> ``(B, R, R, 3) uint8 RGB`` protected faces
        (``key_feeds``: as ``protect_tensor``)."""
        return output_to_faces(self.protect_tensor(faces_to_input(faces, self.input_size), key_feeds))

    def encode(self, faces: np.ndarray) -> np.ndarray:
        """``(B, S, S, 3) uint8 RGB`` aligned faces -> their codes ``w_real`` (the encoder alone): with
        ``render``, the same faces as ``protect`` for several draws of one face at one encoder's cost
        (the artefact guard's redraws, ``face.draws``)."""
        return np.asarray(self.backend.stage("encoder").run({"face": faces_to_input(faces, self.input_size)})["w_real"])

    def render(self, w_real: np.ndarray, key_feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Codes from ``encode`` -> ``(B, R, R, 3) uint8 RGB`` protected faces: the mixer (``key_feeds``: as
        ``protect_tensor``) and the generator."""
        feeds = self.key_feeds if key_feeds is None else key_feeds
        w_prot = self.backend.stage("mixer").run({"w_real": w_real, **feeds})["w_prot"]
        return output_to_faces(self.backend.stage("generator").run({"w_prot": w_prot})["image"])

    def open_pipeline(self, inflight: int) -> FramePipeline:
        """A ``FramePipeline`` on this backend and key (see ``runtime.stream``).

        Backends with their own (``open_pipeline(key_feeds, inflight)``: device buffers, streams,
        IO binding) use it; any other backend gets one thread per stage.
        """
        opener = getattr(self.backend, "open_pipeline", None)
        if opener is not None:
            pipeline: FramePipeline = opener(self.key_feeds, inflight)
            return pipeline
        encoder, mixer, generator = (self.backend.stage(s) for s in FRAME_STAGES)
        key_feeds = self.key_feeds
        return ThreadPipeline([lambda face: encoder.run({"face": face})["w_real"],
                               lambda w_real: mixer.run({"w_real": w_real, **key_feeds})["w_prot"],
                               lambda w_prot: generator.run({"w_prot": w_prot})["image"]],
                              inflight, names=FRAME_STAGES)

    def protect_tensor_many(self, faces: Iterable[np.ndarray], inflight: int = 2) -> Iterator[np.ndarray]:
        """Stream of ``(B, 3, 256, 256)`` float32 batches -> ``(B, 3, R, R)`` float32, in input order.

        Up to ``inflight`` batches are in the pipeline at once (1: one after the other). Batches are
        read from ``faces`` lazily, one ahead of the results; ``last_timings_ms`` follows each result.
        """
        if inflight < 1:
            raise ValueError(f"inflight must be >= 1, got {inflight}")
        yield from in_input_order(self.open_pipeline(inflight), faces, inflight, self._collect)

    def protect_many(self, batches: Iterable[np.ndarray], inflight: int = 2) -> Iterator[np.ndarray]:
        """Stream of ``(B, 256, 256, 3) uint8 RGB`` batches -> ``(B, R, R, 3) uint8 RGB``, in input order.

        The same faces as ``protect`` on each batch, with ``inflight`` batches in flight: on the CPU
        one thread per stage, on a GPU one CUDA stream per batch in flight.
        """
        inputs = (faces_to_input(batch, self.input_size) for batch in batches)
        for image in self.protect_tensor_many(inputs, inflight):
            yield output_to_faces(image)

    def _collect(self, pipeline: FramePipeline) -> np.ndarray:
        image = pipeline.result()
        self.last_timings_ms = dict(pipeline.last_timings_ms)
        return image

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Protector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
