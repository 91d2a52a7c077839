"""FP16: a strongly typed half-precision graph with FP32 islands, from an FP32 export graph.

TensorRT 11 has no FP16 builder flag: precision lives in the ONNX types. A node runs in FP16 when
it produces a *feature map*: a 4-D float tensor of more than one pixel and more than three
channels, plus the convolutions that read one (ToRGB, the last conv of each e4e head: most of the
encoder's weights) and the Resize nodes that read one (the e4e pyramid's upsampling, whose output
size is only known at run time). Everything else stays FP32, which is where StyleGAN2 and e4e need it:

- styles, their pre-normalisation and the demodulation coefficients (``(B, C)`` tensors);
- the skip-RGB image path (bias, FIR upsampling, the ToRGB sum: 3 channels);
- squeeze-and-excitation gates, the e4e heads' activations and linears and the ``latent_avg`` sum;
- the mapping and mixer graphs entirely (no feature maps: they are written as FP32 copies; the
  mixer must pass the real face's layers through bit for bit, which a round trip through FP16
  would break).

The pass is ours (``retype_fp16``): one Cast per tensor that crosses an island border, float32
graph inputs and outputs so callers do not change. ONNX Runtime's ``float16`` tool (the same code
as onnxconverter-common's) was tried with these FP32 nodes on its block list: it casts every
tensor between two blocked nodes to FP16 and back, so the islands were rounded to FP16 at every
edge anyway (encoder error 2.6e-4 instead of 2.8e-5 on the tiny model).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper

from ..errors import ExportError
from .graphfile import load_graph, save_graph

_CONVS = ("Conv", "ConvTranspose")
# Ops that keep their input's channels and only move pixels: they run in FP16 when they read an FP16
# feature map, even where shape inference cannot tell their output size (the e4e pyramid's Resize
# takes its size from another tensor's Shape at run time).
_PIXEL_MOVERS = ("Resize",)
# Ops whose output type is an attribute, not their input's: they keep their FP32 typing.
_TYPED_BY_ATTRIBUTE = {"Cast", "CastLike", "ConstantOfShape", "EyeLike", "RandomNormal", "RandomNormalLike",
                       "RandomUniform", "RandomUniformLike"}


def fp16_node_names(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that the rule above puts in FP16 (all others are FP32 islands)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int | None]] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        tensor = value.type.tensor_type
        if tensor.elem_type == onnx.TensorProto.FLOAT and tensor.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]

    def pixels_and_channels(name: str) -> tuple[int, int] | None:
        dims = shapes.get(name)
        if dims is None or len(dims) != 4 or None in dims[1:]:
            return None
        return int(dims[2] or 0) * int(dims[3] or 0), int(dims[1] or 0)

    hot: set[str] = set()
    produced_hot: set[str] = set()
    for node in model.graph.node:
        outs = [pixels_and_channels(o) for o in node.output]
        spatial = bool(outs) and all(o is not None and o[0] > 1 for o in outs)
        wide = spatial and all(o is not None and o[1] > 3 for o in outs)
        reads_hot = node.op_type in _CONVS + _PIXEL_MOVERS and node.input[0] in produced_hot
        if (wide or reads_hot) and node.op_type not in _TYPED_BY_ATTRIBUTE:
            hot.add(node.name)
            produced_hot.update(node.output)
    return hot


def convert_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str], external_data: bool) -> dict[str, Any]:
    """Write the FP16 version of graph ``src`` to ``dst``; return its report for the manifest.

    Inputs and outputs stay float32 (Cast nodes at the border). A graph without feature maps
    (mapping, mixer) is written unchanged, in FP32. Report: ``{"fp16_nodes", "fp32_nodes",
    "casts", "files"}``; node counts exclude the inserted Casts.
    """
    model = load_graph(src)
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    hot = fp16_node_names(model)
    n_nodes = len(model.graph.node)
    casts = retype_fp16(model.graph, hot) if hot else 0
    files = save_graph(model, Path(dst), external_data)
    return {"fp16_nodes": len(hot), "fp32_nodes": n_nodes - len(hot), "casts": casts, "files": files}


# Inputs that ONNX types as float32 whatever the data type (they stay FP32 in FP16 nodes).
_FLOAT32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}


def retype_fp16(graph: onnx.GraphProto, hot: set[str]) -> int:
    """Make the ``hot`` nodes FP16 in place: FP16 initializers, one Cast per crossing tensor.

    A tensor crossing from an FP32 node (or a graph input, or an initializer shared with FP32
    nodes) into an FP16 node gets one ``Cast(to=FLOAT16)`` shared by its FP16 readers, and back
    likewise; graph outputs produced in FP16 are cast back to float32 under their own name.
    Returns the number of Casts added. No round trip through FP16 ever happens inside an island.
    """
    float_tensors = _float_tensor_names(graph)
    initializers = {t.name: t for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    produced_hot = {o for n in graph.node if n.name in hot for o in n.output}
    new_nodes: list[onnx.NodeProto] = []
    cast_of: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in cast_of:
            suffix = "fp16" if to == onnx.TensorProto.FLOAT16 else "fp32"
            cast_of[key] = f"{name}_{suffix}"
            new_nodes.append(onnx.helper.make_node("Cast", [name], [cast_of[key]], to=to,
                                                   name=f"{name}_cast_{suffix}"))
        return cast_of[key]

    for node in graph.node:
        is_hot = node.name in hot
        keep32 = _FLOAT32_INPUTS.get(node.op_type, ()) if is_hot else ()
        for k, name in enumerate(node.input):
            if not name or name not in float_tensors or k in keep32:
                continue
            if is_hot and name in initializers:
                if all(r.name in hot for r in readers[name]):
                    _to_fp16_initializer(initializers[name])
                else:
                    node.input[k] = cast(name, onnx.TensorProto.FLOAT16)
            elif is_hot and name not in produced_hot:
                node.input[k] = cast(name, onnx.TensorProto.FLOAT16)
            elif not is_hot and name in produced_hot:
                node.input[k] = cast(name, onnx.TensorProto.FLOAT)
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.name in hot:
            for k, name in enumerate(node.output):
                if name in outputs:  # keep the float32 interface: produce "<name>_fp16", cast back
                    node.output[k] = f"{name}_fp16"
                    new_nodes.append(onnx.helper.make_node("Cast", [node.output[k]], [name],
                                                           to=onnx.TensorProto.FLOAT, name=f"{name}_cast_fp32"))
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    sort_topologically(graph)
    return len(new_nodes)


def _float_tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Float32 tensors of the graph (inputs, initializers, and outputs of float-producing nodes)."""
    inferred = onnx.shape_inference.infer_shapes(onnx.helper.make_model(graph))
    names = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            names.add(value.name)
    return names


def _to_fp16_initializer(tensor: onnx.TensorProto) -> None:
    if tensor.data_type != onnx.TensorProto.FLOAT:
        return
    values = onnx.numpy_helper.to_array(tensor)
    half = np.clip(values, -65504.0, 65504.0).astype(np.float16)
    tensor.CopyFrom(onnx.numpy_helper.from_array(half, tensor.name))


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows its producers (the converter appends its Casts)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError(f"graph {graph.name!r}: cycle or dangling input after FP16 conversion "
                              f"(near node {pending[0].name!r})")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for node in ready:
            ordered.append(node)
            available.update(node.output)
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)
