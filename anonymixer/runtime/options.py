"""The Protector that command-line options ask for (``--model``/``--onnx``/``--engines``, ...).

Below the CLI and the Ray actors (``anonymixer.cluster``), so that both open a Protector the same
way without importing each other.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import AnonymixerError

if TYPE_CHECKING:
    from ..keys import Key
    from .protector import Protector


def protector_from_args(args: argparse.Namespace, key: Key) -> Protector:
    """The Protector that a command's options ask for; any command's namespace works.

    ``--engines DIR``: TensorRT engines (``trt``); ``--onnx DIR``: ONNX Runtime (``ort``); else
    ``--model SPEC`` on ``--backend`` (default ``torch``). ``--device``: torch device (default cpu),
    ONNX Runtime providers (default auto: CUDA/TensorRT when present; ``cpu``, ``cuda[:N]``,
    ``tensorrt[:N]``) or the CUDA device of TensorRT (``cuda:N``). Also ``--resolution``,
    ``--precision`` (ort: fp32 default; trt: the folder's), ``--salt``. Options a command lacks
    take their defaults.
    """
    from . import Protector

    onnx, engines = getattr(args, "onnx", None), getattr(args, "engines", None)
    backend, device = getattr(args, "backend", None), getattr(args, "device", None)
    precision = getattr(args, "precision", None)
    options: dict[str, object] = {"output_resolution": getattr(args, "resolution", None)}
    kind, _, index = (device or "").partition(":")
    device_id = int(index) if index.isdigit() else 0
    if onnx and engines:
        raise AnonymixerError("give --onnx DIR (ONNX Runtime) or --engines DIR (TensorRT), not both")
    if engines:
        if backend not in (None, "trt"):
            raise AnonymixerError(f"--engines runs on the trt backend, not {backend!r}; drop --backend")
        backend, model = "trt", engines
        options.update(precision=precision, device_id=device_id)
    elif onnx:
        if backend not in (None, "ort"):
            raise AnonymixerError(f"--onnx runs on the ort backend; for {backend!r} use "
                                  + ("--engines DIR from `anonymixer build`" if backend == "trt" else "--model SPEC"))
        backend, model = "ort", onnx
        options.update(precision=precision or "fp32", providers=kind or "auto", device_id=device_id,
                       threads=getattr(args, "threads", None))
    else:
        backend, model = backend or "torch", getattr(args, "model", None)
        if backend == "ort":
            raise AnonymixerError("--backend ort needs --onnx DIR (an export folder from `anonymixer export`)")
        if backend == "trt":
            raise AnonymixerError("--backend trt needs --engines DIR (an engine folder from `anonymixer build`)")
        options.update(device=device or "cpu")
    return Protector(model, key, backend=backend, salt=getattr(args, "salt", None), **options)
