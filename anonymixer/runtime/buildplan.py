"""What ``anonymixer build`` will ask of a TensorRT version, decided from that version's own API.

    plans = plan_build(features(tensorrt), ExportManifest("export/ffhq"), "int8", (1, 4, 8))

``features`` reads a ``tensorrt`` module's attributes (the real one, or a ``standin`` of a version
that is not installed); ``plan_build`` turns an export folder into one ``GraphPlan`` per graph:
which ONNX file, the network's typing mode and creation flags, the builder flags to set and to
clear, the optimisation profile. ``anonymixer build`` follows the plan; ``--dry-run`` prints it.
Plain Python: no TensorRT needed.

The rules (issue 15):
- strongly typed wherever the module offers ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
  (10.x, JetPack 6.2's 10.3 included; TensorRT 11 is always strongly typed and ignores the flag),
  so the precisions written in the graph are the precisions that run: the FP16 graph's FP32
  islands stay FP32, the INT8 graph's FP16 scales make its unquantized parts FP16. Only a
  TensorRT without that flag falls back to weak typing with ``BuilderFlag.FP16``/``INT8``;
- the key path (mapping) and the mixer are built from their FP32 graphs and with ``BuilderFlag.TF32``
  cleared, whatever the precision: the mixer copies the real face's layers bit for bit and a
  key's code must not depend on the deployment's precision;
- the mixer's key material (``KEY_INPUTS``: ``key_matrix (D, D)``, ``key_offset (L, D)``, no batch
  axis) gets its one fixed shape; every other input covers ``batch`` = (min, opt, max);
- a graph whose opset the version's parser does not read is refused before the build starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ..errors import EngineError
from ..export.layout import GRAPHS, PRECISIONS
from .engines import Shape, engine_filename, parse_version, profile_shapes
from .manifest import ExportManifest

FP32_STAGES = ("mapping", "mixer")          # built FP32 for every --precision (module docstring)
MAX_OPSET = {10: 20, 11: 25}                 # ONNX opsets each major's parser reads (NVIDIA's ONNX opset guide)
WEAK_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}


@dataclass(frozen=True)
class TensorRTFeatures:
    """What one TensorRT Python module offers the build (read by ``features``)."""

    version: str
    network_flags: tuple[str, ...]     # members of NetworkDefinitionCreationFlag
    builder_flags: tuple[str, ...]     # members of BuilderFlag
    max_opset: int

    @property
    def strongly_typed(self) -> bool:
        """Strongly typed networks: offered by a flag (10.x) or the only kind (11.x, no FP16 flag)."""
        return "STRONGLY_TYPED" in self.network_flags or "FP16" not in self.builder_flags


def _members(enum: Any) -> tuple[str, ...]:
    members = getattr(enum, "__members__", None)
    if isinstance(members, dict):
        return tuple(members)
    return tuple(name for name in dir(enum) if name.isupper() and not name.startswith("_"))


def features(trt: Any) -> TensorRTFeatures:
    """The features of module ``trt`` (``import tensorrt``, or a ``standin``)."""
    version = str(getattr(trt, "__version__", "0"))
    major = (parse_version(version) or (0,))[0]
    return TensorRTFeatures(version=version, network_flags=_members(trt.NetworkDefinitionCreationFlag),
                            builder_flags=_members(trt.BuilderFlag),
                            max_opset=MAX_OPSET.get(major, max(MAX_OPSET.values()) if major > 11 else 20))


# The flags each version's Python module exposes (NVIDIA's Python API reference for 10.3 and 10.12,
# the 10.x -> 11.x migration guide for 11): the stand-ins that --dry-run and the tests plan against.
_BUILDER_10 = ("FP16", "BF16", "INT8", "FP8", "INT4", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
               "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "GPU_FALLBACK",
               "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "WEIGHT_STREAMING", "STRIP_PLAN")
STANDIN_FLAGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "10.3.0": (("EXPLICIT_BATCH", "STRONGLY_TYPED"), _BUILDER_10),
    "10.12.0": (("EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"),
                _BUILDER_10 + ("FP4", "MONITOR_MEMORY", "DISTRIBUTIVE_INDEPENDENCE")),
    "11.1.0": (("STRONGLY_TYPED",),   # accepted and ignored: every 11.x network is strongly typed
               ("REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "GPU_FALLBACK", "VERSION_COMPATIBLE",
                "EXCLUDE_LEAN_RUNTIME", "WEIGHT_STREAMING", "STRIP_PLAN", "MONITOR_MEMORY")),
}
STANDIN_NOTES = {"10.3.0": "JetPack 6.2 (CUDA 12.6)", "10.12.0": "10.12 to 10.x, weak typing deprecated",
                 "11.1.0": "desktop pip, weak typing removed"}


def standin(version: str) -> SimpleNamespace:
    """A stand-in ``tensorrt`` module: ``__version__`` and the two flag enums of ``version``."""
    network, builder = STANDIN_FLAGS[version]
    return SimpleNamespace(__version__=version,
                           NetworkDefinitionCreationFlag=SimpleNamespace(**{n: i for i, n in enumerate(network)}),
                           BuilderFlag=SimpleNamespace(**{n: i for i, n in enumerate(builder)}))


@dataclass(frozen=True)
class GraphPlan:
    """How one graph becomes one engine."""

    stage: str
    precision: str                         # the engine's --precision (its file name)
    graph_precision: str                   # the ONNX graph built: fp32 for FP32_STAGES
    graph_file: str
    strongly_typed: bool
    network_flags: tuple[str, ...]         # NetworkDefinitionCreationFlag members to set
    builder_flags: tuple[str, ...]         # BuilderFlag members to set
    cleared_flags: tuple[str, ...]         # BuilderFlag members to clear (TF32 on the FP32 stages)
    profile: dict[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)
    opset: int | None = None

    def describe(self) -> str:
        """One line: typing mode and flags."""
        typing = "strongly typed" if self.strongly_typed else "weakly typed"
        opset = f" (opset {self.opset})" if self.opset is not None else ""
        parts = [f"{self.graph_precision} graph {self.graph_file}{opset}", typing]
        if self.network_flags:
            parts.append("network " + "|".join(self.network_flags))
        parts.append("set " + (", ".join(f"BuilderFlag.{f}" for f in self.builder_flags) or "no precision flags"))
        if self.cleared_flags:
            parts.append("clear " + ", ".join(f"BuilderFlag.{f}" for f in self.cleared_flags))
        return "; ".join(parts)


def plan_graph(trt: TensorRTFeatures, stage: str, precision: str, graph_file: str,
               inputs: Sequence[dict[str, Any]], batch: tuple[int, int, int], opset: int | None = None) -> GraphPlan:
    """The plan of one graph (module docstring); ``inputs`` as the manifest lists them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    graph_precision = "fp32" if stage in FP32_STAGES else precision
    if opset is not None and opset > trt.max_opset:
        raise EngineError(f"{graph_file}: opset {opset}, but TensorRT {trt.version}'s ONNX parser reads up to "
                          f"{trt.max_opset}; re-export with `anonymixer export --opset {min(trt.max_opset, 20)}`")
    strongly = trt.strongly_typed
    flags = tuple(f for f in WEAK_FLAGS[graph_precision] if f in trt.builder_flags) if not strongly else ()
    return GraphPlan(stage=stage, precision=precision, graph_precision=graph_precision, graph_file=graph_file,
                     strongly_typed=strongly,
                     network_flags=("STRONGLY_TYPED",) if "STRONGLY_TYPED" in trt.network_flags else (),
                     builder_flags=flags,
                     cleared_flags=("TF32",) if stage in FP32_STAGES and "TF32" in trt.builder_flags else (),
                     profile=profile_shapes(inputs, batch, graph_file), opset=opset)


def plan_build(trt: TensorRTFeatures, manifest: ExportManifest, precision: str, batch: tuple[int, int, int],
               stages: Sequence[str] = GRAPHS) -> list[GraphPlan]:
    """One ``GraphPlan`` per graph of export folder ``manifest``."""
    plans = []
    for stage in stages:
        graph_precision = "fp32" if stage in FP32_STAGES else precision
        entry = manifest.graph(stage, graph_precision)
        raw = manifest.data["graphs"][stage][graph_precision]
        opset = raw.get("opset") or (raw.get("int8") or {}).get("opset") or manifest.data.get("opset")
        plans.append(plan_graph(trt, stage, precision, entry.path.name, entry.inputs, batch,
                                int(opset) if opset else None))
    return plans


def describe_build(trt: TensorRTFeatures, plans: Sequence[GraphPlan], note: str = "") -> list[str]:
    """The ``--dry-run`` printout for one TensorRT version: a header and two lines per graph."""
    mode = ("strongly typed" + (" (always, the flag is ignored)" if "FP16" not in trt.builder_flags else "")
            if trt.strongly_typed else "weakly typed (no STRONGLY_TYPED flag)")
    lines = [f"TensorRT {trt.version}{f' ({note})' if note else ''}: {mode}; ONNX opset <= {trt.max_opset}"]
    for plan in plans:
        lines.append(f"  {plan.stage:<9} -> {engine_filename(plan.stage, plan.precision)}: {plan.describe()}")
        shapes = "; ".join(f"{name} {'x'.join(map(str, low))} .. {'x'.join(map(str, high))}"
                           for name, (low, _, high) in plan.profile.items())
        lines.append(f"  {'':<9}    profile: {shapes}")
    return lines
