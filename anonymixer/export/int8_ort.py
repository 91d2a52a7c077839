"""INT8 for ONNX Runtime's CPU provider: QOperator graphs whose convolutions run integer kernels.

The Q/DQ graphs of ``int8.py`` are TensorRT's form: Q/DQ on each convolution's inputs, none on its
output. ONNX Runtime's CPU provider fuses only ``DQ -> Conv -> Q`` into an integer kernel, so on the
CPU that form dequantizes and runs float convolutions (slower than FP32: 0.69x, issue 13). This
module writes the form the CPU provider runs as integers: ``QLinearConv`` nodes (QOperator), uint8
activations (asymmetric, per tensor) and int8 weights (symmetric, per output channel), "U8S8",
whose dot products use VNNI (``vpdpbusd``) where the CPU has it. Measured against S8S8 on the
same graphs in ``benchmarks/RESULTS.md``. Without VNNI (AVX2 only), U8S8 can saturate in
``vpmaddubsw``; the manifest records the CPU flags of the machine that calibrated.

ONNX Runtime's CPU provider has no integer transposed convolution, so a ``ConvTranspose`` with
stride 2, kernel 4 and padding 1 (DCGAN's upsampling, the whole faces64 generator) is first
rewritten exactly into its sub-pixel form: four 2x2 ``Conv``s, one per output phase, then
``Concat`` and ``DepthToSpace`` (``subpixel_conv_transposes``); those convolutions quantize.

The same convolutions as TensorRT's form stay in floating point (``int8.auto_keep_fp``: FIR
filters, the RGB convolutions) and the same ``keep_fp`` patterns apply. Files are
``<stage>.int8-ort.onnx`` next to ``<stage>.int8.onnx``; the manifest lists them under the
``int8-ort`` key of each stage (encoder and generator), and ``OrtBackend`` takes them for
``precision="int8"`` when it runs on the CPU provider only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from ..errors import ExportError
from .graphfile import load_graph, save_graph
from .int8 import CALIB_METHODS, _Feeds, _quiet, auto_keep_fp, match_nodes

ORT_QUANTIZED_OPS = ("Conv",)   # ConvTranspose has no QOperator kernel on ORT's CPU provider
ACTIVATION_TYPES = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}


def quantize_int8_ort(src: str | os.PathLike[str], dst: str | os.PathLike[str], feeds: Mapping[str, np.ndarray],
                      method: str = "minmax", keep_fp: Sequence[str] = (), external_data: bool = False,
                      on_sample: Callable[[int], object] | None = None, activations: str = "u8") -> dict[str, Any]:
    """Write the QOperator INT8 version of FP32 graph ``src`` to ``dst``, calibrated on ``feeds``.

    ``feeds``: ``{graph input: (N, ...) float32}``, run one sample at a time. ``activations``:
    ``u8`` (U8S8, the default) or ``s8`` (S8S8, symmetric). Returns the manifest report: form,
    method, samples, quantized node count, kept node names with their reasons, files.
    """
    if method not in CALIB_METHODS:
        raise ExportError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIB_METHODS)}")
    if activations not in ACTIVATION_TYPES:
        raise ExportError(f"unknown activation type {activations!r}: choose one of {', '.join(ACTIVATION_TYPES)}")
    with tempfile.TemporaryDirectory(prefix="anonymixer-int8-ort-") as tmp:
        model = load_graph(src, load_weights=False)
        if any(_upsampling(node) for node in model.graph.node):
            model = subpixel_conv_transposes(load_graph(src))
            save_graph(model, Path(tmp) / "subpixel.onnx", external_data)
            src = Path(tmp) / "subpixel.onnx"
            model = load_graph(src, load_weights=False)
        return _quantize(src, dst, model, feeds, method, keep_fp, external_data, on_sample, activations)


def _quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: onnx.ModelProto,
              feeds: Mapping[str, np.ndarray], method: str, keep_fp: Sequence[str], external_data: bool,
              on_sample: Callable[[int], object] | None, activations: str) -> dict[str, Any]:
    auto = auto_keep_fp(model)
    by_pattern = {name: pattern for pattern, names in match_nodes(model, keep_fp).items() for name in names}
    convs = [n.name for n in model.graph.node if n.op_type in ORT_QUANTIZED_OPS]
    excluded = sorted((set(auto) | set(by_pattern)) & set(convs))
    reader = _Feeds(feeds, on_sample)
    options = {"ActivationSymmetric": activations == "s8", "WeightSymmetric": True,
               "CalibStridedMinMax": 1}   # one sample's activations in memory at a time
    with tempfile.TemporaryDirectory(prefix="anonymixer-int8-ort-") as tmp:
        out = Path(tmp) / "model.onnx"
        try:
            with _quiet():
                quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QOperator,
                                op_types_to_quantize=list(ORT_QUANTIZED_OPS), per_channel=True,
                                activation_type=ACTIVATION_TYPES[activations], weight_type=QuantType.QInt8,
                                nodes_to_exclude=excluded, calibrate_method=CALIB_METHODS[method],
                                use_external_data_format=external_data, extra_options=options)
        except Exception as exc:
            raise ExportError(f"{src}: INT8 (ONNX Runtime form) quantization failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        files = save_graph(load_graph(out), Path(dst), external_data)
    kept = {name: auto.get(name) or f"--keep-fp {by_pattern[name]}" for name in excluded}
    return {"form": f"QOperator QLinearConv, {activations.upper()}S8, per-channel weights", "method": method,
            "samples": reader.n, "quantized_nodes": len(convs) - len(kept), "kept_fp": kept, "files": files}


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else onnx.helper.get_attribute_value(found)


def _upsampling(node: onnx.NodeProto) -> bool:
    """A ``ConvTranspose`` that ``subpixel_conv_transposes`` rewrites: 2-D, stride 2, kernel 4, pads 1."""
    return (node.op_type == "ConvTranspose" and list(_attribute(node, "strides", [])) == [2, 2]
            and list(_attribute(node, "kernel_shape", [])) == [4, 4]
            and list(_attribute(node, "pads", [0, 0, 0, 0])) == [1, 1, 1, 1]
            and _attribute(node, "group", 1) == 1 and list(_attribute(node, "dilations", [1, 1])) == [1, 1]
            and not any(_attribute(node, "output_padding", [0, 0])) and not _attribute(node, "output_shape", []))


# Output phase a (row or column parity) of a stride-2, kernel-4, pad-1 transposed convolution reads
# input rows m-1, m (a = 0: kernel taps 3, 1) or m, m+1 (a = 1: taps 2, 0): a 2-tap correlation with
# one row of padding before (a = 0) or after (a = 1).
_PHASE_TAPS = {0: [3, 1], 1: [2, 0]}


def subpixel_conv_transposes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every ``_upsampling`` ConvTranspose of ``model`` (weights loaded) into four 2x2 Convs
    (``(C_out, C_in, 2, 2)`` each, asymmetric pads) -> Concat -> DepthToSpace(2, DCR): the same
    ``(B, C_out, 2H, 2W)`` output, exactly, from the same MACs."""
    weights = {t.name: t for t in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if not _upsampling(node) or node.input[1] not in weights:
            nodes.append(node)
            continue
        w = onnx.numpy_helper.to_array(weights[node.input[1]])   # (C_in, C_out, 4, 4)
        phases = []
        for a in (0, 1):
            for b in (0, 1):
                kernel = w[:, :, _PHASE_TAPS[a]][:, :, :, _PHASE_TAPS[b]].transpose(1, 0, 2, 3)
                name = f"{node.name}/subpixel_{a}{b}"
                model.graph.initializer.append(onnx.numpy_helper.from_array(np.ascontiguousarray(kernel),
                                                                            f"{name}.weight"))
                inputs = [node.input[0], f"{name}.weight", *node.input[2:3]]
                nodes.append(onnx.helper.make_node("Conv", inputs, [f"{name}.out"], name=name, kernel_shape=[2, 2],
                                                   pads=[1 - a, 1 - b, a, b]))
                phases.append(f"{name}.out")
        nodes.append(onnx.helper.make_node("Concat", phases, [f"{node.name}/subpixel_concat"],
                                           name=f"{node.name}/subpixel_concat", axis=1))
        nodes.append(onnx.helper.make_node("DepthToSpace", [f"{node.name}/subpixel_concat"], list(node.output),
                                           name=f"{node.name}/subpixel", blocksize=2, mode="DCR"))
    used = {name for node in nodes for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
