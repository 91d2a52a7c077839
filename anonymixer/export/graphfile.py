"""ONNX graph files: read and write them (external data included), describe them, run them on ORT CPU.

Every reader here turns a truncated, corrupt or missing file into one ``ExportError`` line that
names the file, so that a damaged export folder never surfaces as a protobuf traceback.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ..errors import ExportError
from ..digest import sha256_file

# A stage whose FP32 weights exceed this keeps them in external data (``<graph>.onnx.data``), in
# every precision: the e4e encoder (about 1 GB at ffhq1024/256 sizes) does, the generator (113 MB
# at 1024) and the small graphs never do. Protobuf caps a file at 2 GiB; a quarter of that keeps
# the FP32 file and the quantizer's in-memory copies well clear of the cap, and gives a runtime
# one layout per stage whatever the precision.
EXTERNAL_DATA_MIN_BYTES = 256 * 2**20

_ONNX_DTYPES: dict[int, str] = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
                onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT8: "int8",
                onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool",
                onnx.TensorProto.INT32: "int32"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def load_graph(path: str | os.PathLike[str], load_weights: bool = True) -> onnx.ModelProto:
    """Read an ONNX file (and its external data) or raise a one-line ``ExportError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file; re-run `anonymixer export`")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # protobuf DecodeError, missing external data, ...
        raise ExportError(f"{path}: not a readable ONNX graph, truncated or corrupt ({_one_line(exc)}); "
                          "re-run `anonymixer export`") from None


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes held by the graph's initializers (inline or external)."""
    total = 0
    for tensor in model.graph.initializer:
        n = int(np.prod(tensor.dims)) if tensor.dims else 1
        total += n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return total


def save_graph(model: onnx.ModelProto, path: str | os.PathLike[str], external_data: bool) -> list[str]:
    """Write ``model`` to ``path``; with ``external_data`` its weights go to ``<name>.data`` beside it.

    Returns the names of the files written (graph first). Stale files of the same names are
    replaced (onnx appends to an existing external-data file). The in-memory ``model`` may lose
    its weights in the process (onnx moves them out): reload from ``path`` to use it again.
    """
    path = Path(path)
    data = path.with_name(path.name + ".data")
    for stale in (path, data):
        stale.unlink(missing_ok=True)
    if not external_data:
        onnx.save_model(model, str(path))
        return [path.name]
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    # A graph without tensors over the threshold (the tiny mixer) gets no data file: list only what exists.
    return [path.name, data.name] if data.is_file() else [path.name]


def check_graph(path: str | os.PathLike[str]) -> None:
    """``onnx.checker`` full check (types and shapes), by path so external data is fine."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{path}: fails onnx.checker ({_one_line(exc)})") from None


def tensor_info(value: onnx.ValueInfoProto) -> dict[str, Any]:
    """``{"name", "dtype", "shape"}`` of a graph input/output; dynamic axes are their names (``"batch"``)."""
    t = value.type.tensor_type
    shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
    return {"name": value.name, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), "shape": shape}


def describe_graph(model: onnx.ModelProto) -> dict[str, Any]:
    """Inputs, outputs and the operator inventory (``{"Conv": 53, ...}``, sorted by name)."""
    ops = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                              for n in model.graph.node)
    return {"inputs": [tensor_info(v) for v in model.graph.input],
            "outputs": [tensor_info(v) for v in model.graph.output],
            "operators": dict(sorted(ops.items()))}


def graph_entry(folder: Path, files: list[str], model: onnx.ModelProto) -> dict[str, Any]:
    """A graph's manifest entry: file, sha256, bytes, external data files, I/O, operators, node count, opset.

    ``files`` as ``save_graph`` returns them; ``model`` may be loaded without its weights.
    """
    path = folder / files[0]
    entry: dict[str, Any] = {"file": files[0], "sha256": sha256_file(path), "bytes": path.stat().st_size,
                             "external_data": files[1:]}
    entry.update(describe_graph(model))
    entry["nodes"] = len(model.graph.node)
    entry["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return entry


def check_portable(model: onnx.ModelProto, name: str) -> None:
    """Refuse what TensorRT and other runtimes choke on: custom domains, ScatterND, computed Conv weights."""
    initializers = {t.name for t in model.graph.initializer}
    problems = [f"{n.name} ({n.domain}.{n.op_type})" for n in model.graph.node
                if n.domain not in ("", "ai.onnx")]
    problems += [f"{n.name} (ScatterND: an in-place write in forward)" for n in model.graph.node
                 if n.op_type == "ScatterND"]
    problems += [f"{n.name} ({n.op_type} weight {n.input[1]!r} is computed, not an initializer)"
                 for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")
                 and n.input[1] not in initializers]
    if problems:
        raise ExportError(f"{name}: graph is not portable: {'; '.join(problems[:5])}"
                          + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""))


def open_session(path: str | os.PathLike[str]) -> ort.InferenceSession:
    """An ONNX Runtime CPU session, or a one-line ``ExportError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file; re-run `anonymixer export`")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's own warnings about fp16 casts are not the user's problem
    # Export tooling runs each graph a few times on large images: return memory after each run
    # rather than keep the arena's high-water mark (tens of GB at 1024x1024 otherwise).
    options.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: ONNX Runtime cannot load it, truncated or corrupt? "
                          f"({_one_line(exc)})") from None


def run_session(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """Run a one-output graph on float32 feeds (extra feeds are ignored); return its output."""
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in names})
    return np.asarray(out[0])


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """``||out - ref|| / ||ref||`` (Frobenius), in float64."""
    ref64 = np.asarray(ref, np.float64)
    denom = float(np.linalg.norm(ref64))
    num = float(np.linalg.norm(np.asarray(out, np.float64) - ref64))
    return num / denom if denom > 0 else num
