"""INT8: explicit Q/DQ graphs (the form TensorRT consumes), made by ONNX Runtime's static quantizer.

Symmetric INT8 everywhere (zero points are 0), per-channel weights, per-tensor activations, biases
left in float (TensorRT fuses them), dedicated Q/DQ pairs per consumer, and no Q/DQ on conv
outputs (the next conv's input pair does it). Only convolutions are quantized: they are where
the arithmetic is. Kept in floating point, whatever the patterns say:

- FIR filters (StyleGAN2's blur and upsampling): depthwise convs with fixed kernels, cheap, and
  a [1, 3, 3, 1] kernel does not survive INT8 (its small taps lose about 1 %);
- convolutions that read or write the RGB image (the encoder's stem, the generator's ToRGB): the
  image itself is what is measured, and they are cheap (3 channels).

``keep_fp`` patterns keep more nodes in floating point: a node-name substring or glob
(``/styles.1*``, ``to_rgbs``) or an op type (``ConvTranspose``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)

from ..errors import ExportError
from .graphfile import load_graph, save_graph

CALIB_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}
QUANTIZED_OPS = ("Conv", "ConvTranspose")


def auto_keep_fp(model: onnx.ModelProto) -> dict[str, str]:
    """Convolutions kept in floating point by rule (module docstring): ``{node name: reason}``."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    kept: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        shape = weights.get(node.input[1], ())
        if len(shape) < 2:
            continue
        if node.op_type == "Conv":
            c_out, c_in = shape[0], shape[1] * group
        else:
            c_in, c_out = shape[0], shape[1] * group
        if group > 1:
            kept[node.name] = "FIR filter (depthwise, fixed kernel)"
        elif c_out == 3:
            kept[node.name] = "writes the RGB image"
        elif c_in == 3:
            kept[node.name] = "reads the RGB image"
    return kept


def match_nodes(model: onnx.ModelProto, patterns: Sequence[str]) -> dict[str, list[str]]:
    """``{pattern: [conv node names]}``: a pattern matches an op type exactly, a name as a glob or substring.

    Only the nodes INT8 would quantize (``QUANTIZED_OPS``) are candidates.
    """
    convs = [n for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    found: dict[str, list[str]] = {}
    for pattern in patterns:
        found[pattern] = [n.name for n in convs
                          if n.op_type == pattern or pattern in n.name or fnmatch.fnmatchcase(n.name, pattern)]
    return found


class _Feeds(CalibrationDataReader):
    """Batch-1 samples of named arrays, in ranges (ORT's strided calibration keeps memory bounded)."""

    def __init__(self, feeds: Mapping[str, np.ndarray], on_sample: Callable[[int], object] | None) -> None:
        self.feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
        self.on_sample = on_sample
        self.n = len(next(iter(self.feeds.values())))
        self.set_range(0, self.n)

    def __len__(self) -> int:
        return self.n

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        i, self._next = self._next, self._next + 1
        if self.on_sample is not None:
            self.on_sample(1)
        return {k: v[i:i + 1] for k, v in self.feeds.items()}


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], feeds: Mapping[str, np.ndarray],
                  method: str = "minmax", keep_fp: Sequence[str] = (), external_data: bool = False,
                  on_sample: Callable[[int], object] | None = None) -> dict[str, Any]:
    """Write the Q/DQ INT8 version of FP32 graph ``src`` to ``dst``, calibrated on ``feeds``.

    ``feeds`` maps each graph input to ``(N, ...)`` float32 samples (run one at a time;
    ``on_sample(1)`` is called for each). Returns the manifest report: method, samples, quantized
    and kept node names (with the rule or pattern that kept each).
    """
    if method not in CALIB_METHODS:
        raise ExportError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIB_METHODS)}")
    model = load_graph(src, load_weights=False)
    auto = auto_keep_fp(model)
    by_pattern = {name: pattern for pattern, names in match_nodes(model, keep_fp).items() for name in names}
    convs = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    excluded = sorted(set(auto) | set(by_pattern))
    reader = _Feeds(feeds, on_sample)
    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
               "DedicatedQDQPair": True, "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
               "CalibStridedMinMax": 1}  # one sample's activations in memory at a time
    with tempfile.TemporaryDirectory(prefix="anonymixer-int8-") as tmp:
        out = Path(tmp) / "model.onnx"
        try:
            with _quiet():
                quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                nodes_to_exclude=excluded, calibrate_method=CALIB_METHODS[method],
                                use_external_data_format=external_data, extra_options=options)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{src}: INT8 quantization failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        files = save_graph(load_graph(out), Path(dst), external_data)
    kept = {name: auto.get(name) or f"--keep-fp {by_pattern[name]}" for name in excluded}
    return {"method": method, "samples": reader.n, "quantized_nodes": len([c for c in convs if c not in kept]),
            "kept_fp": kept, "files": files}


@contextlib.contextmanager
def _quiet() -> Any:
    """ORT's quantizer prints progress and logs advice on the root logger: keep the console ours."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)
