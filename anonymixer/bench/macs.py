"""Multiply-accumulates (MACs) per face, counted from an ONNX graph.

What is counted, per node, with shapes from shape inference at batch 1 (every symbolic axis of the
graph inputs set to 1). ONNX's own inference stops at shapes computed by ``Where`` (StyleGAN2's
batch-sized constant input), so ONNX Runtime's symbolic shape inference, which folds such shape
arithmetic, is tried first and ONNX's is the fallback:

=============================  ===================================================================
Conv, ConvInteger, QLinearConv  ``numel(Y) * C_in/group * prod(kernel)`` = ``numel(Y) * prod(W.shape[1:])``
ConvTranspose                  ``numel(X) * C_out/group * prod(kernel)`` = ``numel(X) * prod(W.shape[1:])``
MatMul, MatMulInteger,         ``numel(Y) * K`` (``K``: the shared axis, ``A.shape[-1]``)
QLinearMatMul
Gemm                           ``M * N * K`` (``transA`` honoured)
=============================  ===================================================================

Everything else (additions, activations, normalisation, resizing, the modulation and
demodulation products of StyleGAN2) is not counted: those are a few percent of the arithmetic
and bound by memory traffic, not by the tensor units that a device's peak describes. Weights
behind ``DequantizeLinear`` or ``Cast`` (INT8 and FP16 graphs) get their shapes from inference, so
every precision of a graph counts the same MACs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx

CONV_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}            # op -> index of the weight input
MATMUL_OPS = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0}    # op -> index of input A


@dataclass
class MacCount:
    """MACs of one graph at batch 1: ``total``, ``by_op`` (op type -> MACs), and the nodes of a
    counted type whose shapes inference could not resolve (``uncounted``; normally empty)."""

    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    nodes: int = 0
    uncounted: list[str] = field(default_factory=list)

    def add(self, op: str, macs: int) -> None:
        self.total += macs
        self.by_op[op] = self.by_op.get(op, 0) + macs
        self.nodes += 1


def with_batch(model: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have every symbolic (or unknown) axis set to ``batch``."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch
    del fixed.graph.value_info[:]
    return fixed


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    shapes: dict[str, tuple[int, ...] | None] = {}
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = (tuple(int(d.dim_value) for d in dims)
                              if all(d.HasField("dim_value") for d in dims) else None)
    for node in model.graph.node:      # Constant nodes: weights folded by the exporter
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(int(d) for d in attr.t.dims)
    return shapes


def count_macs(model: onnx.ModelProto, batch: int = 1) -> MacCount:
    """MACs of ``model`` at ``batch`` (see the module docstring for what is counted)."""
    fixed = with_batch(model, batch)
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        inferred = SymbolicShapeInference.infer_shapes(fixed, auto_merge=True)
    except Exception:  # an op it does not know: ONNX's inference still resolves most graphs
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    shapes = _shapes(inferred)
    count = MacCount()
    for node in inferred.graph.node:
        op = node.op_type
        if op not in CONV_OPS and op not in MATMUL_OPS and op not in ("ConvTranspose", "Gemm"):
            continue
        try:
            count.add(op, _node_macs(node, shapes))
        except (KeyError, TypeError, IndexError):
            count.uncounted.append(node.name or f"{op}#{len(count.uncounted)}")
    return count


def _shape(shapes: dict[str, tuple[int, ...] | None], name: str) -> tuple[int, ...]:
    shape = shapes[name]
    if shape is None:
        raise KeyError(name)
    return shape


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...] | None]) -> int:
    op = node.op_type
    out = _shape(shapes, node.output[0])
    if op in CONV_OPS:
        weight = _shape(shapes, node.input[CONV_OPS[op]])
        return math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        return math.prod(_shape(shapes, node.input[0])) * math.prod(_shape(shapes, node.input[1])[1:])
    if op in MATMUL_OPS:
        a = _shape(shapes, node.input[MATMUL_OPS[op]])
        return math.prod(out) * a[-1]
    # Gemm: Y (M, N) = A' (M, K) @ B' (K, N)
    a = _shape(shapes, node.input[0])
    trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
    return math.prod(out) * (a[0] if trans_a else a[1])


def graph_macs(path: str | os.PathLike[str], batch: int = 1) -> MacCount:
    """MACs of the ONNX file ``path`` at ``batch``; weights are not loaded (only their shapes matter)."""
    from ..export.graphfile import load_graph

    return count_macs(load_graph(Path(path), load_weights=False), batch)
