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

Deconvolutions (StyleGAN2's upsampling ConvTranspose) are where the Q/DQ form is in doubt.
ONNX Runtime quantizes their weights per output channel (axis 1 of ``(C_in, C_out, k, k)``);
TensorRT does not support that: its kernels assume per-input-channel scales, axis 0
(NVIDIA/TensorRT#2380, maintainer's answer), axis 1 gave wrong results (#1694, advice: axis 0)
and failed to build where C_in != C_out (#1519). So ``deconv`` chooses: ``"float"`` (default:
kept out of INT8, so FP16 in the TensorRT form below), or ``"axis0"`` (TensorRT's form; not yet
run on a GPU here). The choice is recorded in the manifest.

The TensorRT form (``tensorrt_form``) is what ``anonymixer build`` consumes: the Q/DQ graph retyped
like the FP16 graph (``fp16.py``), with FP16 scales (so a strongly typed build, where a
DequantizeLinear outputs its scale's type, runs everything between the quantized convolutions in
FP16 and keeps the FP16 graph's FP32 islands), at opset ``TENSORRT_INT8_OPSET`` (FP16 scales
need QuantizeLinear/DequantizeLinear-19).
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
import onnx.numpy_helper
import onnx.version_converter
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)

from ..errors import ExportError
from .fp16 import retype_fp16
from .graphfile import load_graph, save_graph

CALIB_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}
QUANTIZED_OPS = ("Conv", "ConvTranspose")
DECONV_MODES = {"float": "kept in floating point (FP16 in the TensorRT form)",
                "axis0": "INT8, weights per input channel (axis 0), the form TensorRT supports"}
DEFAULT_DECONV = "float"
DECONV_KEPT = ("ConvTranspose: TensorRT quantizes deconvolution weights only per input channel "
               "(NVIDIA/TensorRT#2380); kept in float (--int8-deconv axis0 to quantize)")
TENSORRT_INT8_OPSET = 19     # QuantizeLinear/DequantizeLinear-19 take FP16 scales
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


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
                  on_sample: Callable[[int], object] | None = None, deconv: str = DEFAULT_DECONV,
                  transform: Callable[[onnx.ModelProto], dict[str, Any]] | None = None,
                  keep_nodes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write the Q/DQ INT8 version of FP32 graph ``src`` to ``dst``, calibrated on ``feeds``.

    ``feeds`` maps each graph input to ``(N, ...)`` float32 samples (run one at a time;
    ``on_sample(1)`` is called for each). ``deconv``: a ``DECONV_MODES`` key. ``transform``
    rewrites the quantized model in place before it is written (``tensorrt_form``) and returns
    what it did, for the report. ``keep_nodes``: more ``{node name: reason}`` kept in float.
    Returns the manifest report: method, samples, deconvolution
    mode, quantized and kept node names (with the rule or pattern that kept each).
    """
    if method not in CALIB_METHODS:
        raise ExportError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIB_METHODS)}")
    if deconv not in DECONV_MODES:
        raise ExportError(f"unknown --int8-deconv {deconv!r}: choose one of {', '.join(DECONV_MODES)}")
    model = load_graph(src, load_weights=False)
    auto = auto_keep_fp(model)
    auto |= {name: reason for name, reason in (keep_nodes or {}).items() if name not in auto}
    if deconv == "float":
        auto |= {n.name: DECONV_KEPT for n in model.graph.node if n.op_type == "ConvTranspose" and n.name not in auto}
    by_pattern = {name: pattern for pattern, names in match_nodes(model, keep_fp).items() for name in names}
    convs = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    excluded = sorted(set(auto) | set(by_pattern))
    reader = _Feeds(feeds, on_sample)
    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
               "DedicatedQDQPair": True, "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
               "CalibStridedMinMax": 1}  # one sample's activations in memory at a time
    if deconv == "axis0":   # TensorRT's axis (module docstring); ORT's quantizer would take axis 1
        options["TensorQuantOverrides"] = {n.input[1]: [{"axis": 0}] for n in model.graph.node
                                           if n.op_type == "ConvTranspose" and n.name not in excluded}
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
        quantized = load_graph(out)
        form = transform(quantized) if transform is not None else {}
        files = save_graph(quantized, Path(dst), external_data)
    kept = {name: auto.get(name) or f"--keep-fp {by_pattern[name]}" for name in excluded}
    return {"method": method, "samples": reader.n, "quantized_nodes": len([c for c in convs if c not in kept]),
            "deconv": deconv, "kept_fp": kept, **form, "files": files}


def fp32_islands(model: onnx.ModelProto, fp16_nodes: set[str]) -> dict[str, str]:
    """Convolutions that the FP16 graph keeps in FP32 (squeeze-and-excitation gates, 1-pixel maps):
    ``{node name: reason}``. The TensorRT form keeps them out of INT8 too, so every Q/DQ pair of it
    sits on an FP16 convolution and has FP16 scales."""
    return {n.name: "an FP32 island of the FP16 graph (1-pixel map: squeeze-and-excitation, style head)"
            for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name not in fp16_nodes}


def tensorrt_form(model: onnx.ModelProto, fp16_nodes: set[str]) -> dict[str, Any]:
    """Make Q/DQ ``model`` the TensorRT INT8 form in place (module docstring); return its report.

    ``fp16_nodes``: the FP16 graph's FP16 node names (``fp16.fp16_node_names`` of the FP32 graph).
    Those nodes, and the Q/DQ nodes that feed them, become FP16 (their scales FP16 initializers);
    the opset is raised to at least ``TENSORRT_INT8_OPSET``. Graph inputs and outputs stay float32.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < TENSORRT_INT8_OPSET:
        converted = onnx.version_converter.convert_version(model, TENSORRT_INT8_OPSET)
        model.CopyFrom(converted)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    hot = {n.name for n in model.graph.node if n.name in fp16_nodes}
    for op in ("DequantizeLinear", "QuantizeLinear"):   # DQ first: a Q is FP16 when its DQ is
        for node in model.graph.node:
            if node.op_type == op and any(c.name in hot for c in consumers.get(node.output[0], [])):
                hot.add(node.name)
    initializers = {t.name: t for t in model.graph.initializer}
    scale_names = {n.input[1] for n in model.graph.node if n.name in hot and n.op_type in QDQ_OPS}
    # FP16 holds scales below 2**-14 only as subnormals (fewer significant bits): count them for the manifest.
    tiny = sum(int((np.abs(onnx.numpy_helper.to_array(initializers[name])) < 2.0 ** -14).sum())
               for name in scale_names if name in initializers)
    casts = retype_fp16(model.graph, hot) if hot else 0
    return {"form": "tensorrt", "opset": max(opset, TENSORRT_INT8_OPSET), "fp16_nodes": len(hot),
            "casts": casts, "scale_types": scale_types(model), "fp16_subnormal_scales": tiny}


def scale_types(model: onnx.ModelProto) -> dict[str, int]:
    """``{"float16": n, "float": m}``: how many Q/DQ scales of each type ``model`` holds."""
    initializers = {t.name: t.data_type for t in model.graph.initializer}
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in QDQ_OPS and node.input[1] in initializers:
            name = onnx.TensorProto.DataType.Name(initializers[node.input[1]]).lower()
            counts[name] = counts.get(name, 0) + 1
    return counts


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
