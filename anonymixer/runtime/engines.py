"""TensorRT engine folders, without TensorRT: names, sidecars, compatibility, build plans, profiles.

    DIR/manifest.json                       the export's manifest (model info for the runtime), with
                                            "engine_folder": {"onnx_dir", "batch"} and "files":
                                            {name: {"sha256", "bytes"}} of every engine, sidecar
                                            and code_stats.npz
    DIR/code_stats.npz                      copied from the export folder (the mixer's key material)
    DIR/encoder.fp16.engine                 one serialized engine per graph (fp32: encoder.engine)
    DIR/encoder.fp16.engine.json            its sidecar (``SIDECAR_FORMAT``)

The runtime hashes every engine and sidecar it loads against the manifest's ``files`` table first
(``runtime.manifest.ExportManifest.verify_file``); an unlisted file is refused.

An engine only runs on the GPU model and the TensorRT version that built it. The sidecar records
both (with the precision, the profile shapes, the ONNX sha256 and the engine's own sha256), and
``check_engine`` refuses a mismatched or corrupt engine in one line that says how to rebuild.
Everything here is plain Python so that it can be tested on machines without TensorRT or CUDA.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import EngineError, ExportError
from ..export.layout import ENGINE_FOLDER, GRAPHS, MANIFEST, PRECISIONS
from ..digest import sha256_file
from ..codestats import STATS_FILE
from ..keymaterial import KEY_INPUTS   # the mixer's key material: fixed shapes, no batch axis

from .manifest import rebuild_command


class SidecarPlan(Protocol):
    """What a sidecar records of a build plan (``buildplan.GraphPlan`` is one)."""

    @property
    def strongly_typed(self) -> bool: ...
    @property
    def builder_flags(self) -> Sequence[str]: ...
    @property
    def cleared_flags(self) -> Sequence[str]: ...
    @property
    def graph_precision(self) -> str: ...

    def describe(self) -> str: ...

SIDECAR_FORMAT = "anonymixer-engine"
SIDECAR_VERSION = 2
INSTALL_TRT = ("pip install 'anonymixer[trt]' ([trt-cu12] or [trt-cu13] to match the driver; "
               "JetPack ships TensorRT already: [jetson])")


def engine_filename(stage: str, precision: str) -> str:
    """``encoder.engine`` for fp32, ``encoder.fp16.engine`` / ``encoder.int8.engine`` otherwise."""
    if stage not in GRAPHS or precision not in PRECISIONS:
        raise ValueError(f"unknown graph {stage!r} or precision {precision!r}")
    return f"{stage}.engine" if precision == "fp32" else f"{stage}.{precision}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.26" -> (10, 3, 0, 26)``; trailing non-numeric parts (``"11.0.0rc1"``) are dropped."""
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def require_tensorrt() -> str:
    """The installed TensorRT's version, or ``EngineError`` saying how to install it.

    ``tensorrt-stubs`` installs a bare ``tensorrt`` folder of ``.pyi`` files that would import as
    an empty namespace package; such a folder (no ``__init__.py``) is not TensorRT and is never
    imported here.
    """
    spec = importlib.util.find_spec("tensorrt")
    if spec is None:
        raise EngineError(f"TensorRT is not installed: {INSTALL_TRT}")
    if spec.origin is None or not spec.origin.endswith((".py", ".so", ".pyd")):
        raise EngineError(f"TensorRT is not installed (only its type stubs, tensorrt-stubs, are): {INSTALL_TRT}")
    version = getattr(importlib.import_module("tensorrt"), "__version__", None)
    if not isinstance(version, str):
        raise EngineError(f"the installed tensorrt package has no version (broken install?): {INSTALL_TRT}")
    return version


def parse_batch(text: str | Sequence[int]) -> tuple[int, int, int]:
    """``"1,4,8"`` (or ``"8"`` for 1,8,8) -> ``(min, opt, max)`` with ``1 <= min <= opt <= max``."""
    try:
        values = [int(v) for v in text.split(",")] if isinstance(text, str) else [int(v) for v in text]
    except ValueError:
        raise ValueError(f"batch must be MIN,OPT,MAX integers, like 1,4,8; got {text!r}") from None
    if len(values) == 1:
        values = [1, values[0], values[0]]
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ValueError(f"batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX; got {text!r}")
    return values[0], values[1], values[2]


Shape = tuple[int, ...]


def profile_shapes(inputs: Sequence[dict[str, Any]], batch: tuple[int, int, int],
                   source: str = "graph") -> dict[str, tuple[Shape, Shape, Shape]]:
    """Optimization-profile ``(min, opt, max)`` shapes for the inputs of one graph.

    ``inputs`` are the manifest's ``[{"name", "shape"}]`` with a string (``"batch"``) or ``None``
    for the dynamic batch axis, which must be the first; all other axes must be fixed. Key inputs
    (``KEY_INPUTS``: ``key_matrix (D, D)``, ``key_offset (L, D)``) have no batch axis: their
    profile is their one fixed shape.
    """
    shapes: dict[str, tuple[Shape, Shape, Shape]] = {}
    for spec in inputs:
        name, dims = spec["name"], list(spec["shape"])
        rest = dims[1:]
        if not dims or not all(isinstance(d, int) and d > 0 for d in rest):
            raise ExportError(f"{source}: input {name!r} has shape {dims}; only the first (batch) axis may "
                              "be dynamic; re-export it with `anonymixer export`")
        if name in KEY_INPUTS and not all(isinstance(d, int) and d > 0 for d in dims):
            raise ExportError(f"{source}: key input {name!r} has shape {dims}; key material has no batch "
                              "axis; re-export it with `anonymixer export`")
        if isinstance(dims[0], int) and dims[0] > 0:
            fixed = tuple(dims)
            shapes[name] = (fixed, fixed, fixed)
            continue
        low, opt, high = batch
        shapes[name] = ((low, *rest), (opt, *rest), (high, *rest))
    return shapes


@dataclass(frozen=True)
class EngineTarget:
    """What an engine is tied to: this machine's TensorRT and GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str           # "8.7"


def make_sidecar(stage: str, precision: str, target: EngineTarget, plan: SidecarPlan,
                 profile: dict[str, tuple[Shape, Shape, Shape]], onnx_file: Path, onnx_sha256: str,
                 engine_sha256: str, engine_bytes: int, onnx_dir: Path, batch: Sequence[int],
                 anonymixer_version: str) -> dict[str, Any]:
    """The sidecar JSON of one engine (see the module docstring)."""
    return {
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "anonymixer_version": anonymixer_version,
        "stage": stage, "precision": precision,
        "tensorrt_version": target.tensorrt_version, "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "network": plan.describe(), "strongly_typed": plan.strongly_typed, "builder_flags": list(plan.builder_flags),
        "cleared_flags": list(plan.cleared_flags), "graph_precision": plan.graph_precision,
        "profile": {name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for name, s in profile.items()},
        "batch": list(batch),
        "onnx": {"dir": str(onnx_dir), "file": onnx_file.name, "sha256": onnx_sha256},
        "engine": {"sha256": engine_sha256, "bytes": engine_bytes},
    }


def engine_manifest(export: dict[str, Any], folder: Path, written: Sequence[Path], onnx_dir: Path,
                    batch: Sequence[int]) -> dict[str, Any]:
    """The manifest of engine folder ``folder`` after ``written`` engines (and their sidecars) were built.

    The export's manifest with ``ENGINE_FOLDER`` added and ``files`` listing engines, sidecars and
    the mixer's code statistics (copied from the export folder).
    Entries of an earlier build of the same model into ``folder`` (another precision) are kept;
    they are checked at load like the new ones.
    """
    kept: dict[str, Any] = {}
    try:
        previous = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        same_model = (previous["model"]["weights_sha256"] == export["model"]["weights_sha256"]
                      and ENGINE_FOLDER in previous)
        kept = dict(previous["files"]) if same_model else {}
    except (OSError, ValueError, KeyError, TypeError):
        kept = {}
    for path in [*written, *map(sidecar_path, written), folder / STATS_FILE]:
        if path.is_file():
            kept[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return {**export, ENGINE_FOLDER: {"onnx_dir": str(onnx_dir), "batch": list(batch)}, "files": kept}


def read_sidecar(engine: Path) -> dict[str, Any]:
    """The sidecar of ``engine``; one-line ``EngineError`` when the engine or its sidecar is unusable."""
    folder = engine.parent
    generic = rebuild_command(None, folder, "PRECISION", None)
    if not engine.is_file():
        raise EngineError(f"{engine}: no such engine; build it with `{generic}`")
    side = sidecar_path(engine)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"{side}: missing sidecar, so {engine.name} cannot be checked against this "
                          f"machine; rebuild with `{generic}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{side}: corrupt sidecar ({type(exc).__name__}); rebuild with `{generic}`") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or data.get("version") != SIDECAR_VERSION:
        raise EngineError(f"{side}: not an anonymixer engine sidecar (version {SIDECAR_VERSION}); "
                          f"rebuild with `{generic}`")
    return data


def check_engine(engine: Path, target: EngineTarget, verify_hash: bool = True) -> dict[str, Any]:
    """Refuse an engine that is corrupt or was built for another GPU or TensorRT; return its sidecar.

    Every refusal is one line ending with the ``anonymixer build`` command that rebuilds it.
    """
    data = read_sidecar(engine)
    onnx = data.get("onnx") or {}
    how = f"rebuild with `{rebuild_command(onnx.get('dir'), engine.parent, data.get('precision', 'fp16'), data.get('batch'))}`"
    expected = data.get("engine") or {}
    if verify_hash and (engine.stat().st_size != expected.get("bytes")
                        or sha256_file(engine) != expected.get("sha256")):
        raise EngineError(f"{engine}: corrupt engine file (size or sha256 differs from its sidecar); {how}")
    built_for = (f"TensorRT {data.get('tensorrt_version')} on {data.get('gpu_name')} "
                 f"(compute capability {data.get('compute_capability')})")
    here = (f"TensorRT {target.tensorrt_version} on {target.gpu_name} "
            f"(compute capability {target.compute_capability})")
    if data.get("tensorrt_version") != target.tensorrt_version:
        raise EngineError(f"{engine}: built with {built_for}, but this machine has {here}; "
                          f"engines only load on the TensorRT version that built them: {how}")
    if (data.get("compute_capability") != target.compute_capability or data.get("gpu_name") != target.gpu_name):
        raise EngineError(f"{engine}: built for {built_for}, but this machine has {here}; "
                          f"engines are tied to the GPU that built them: {how}")
    return data
