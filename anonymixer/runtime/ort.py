"""The ONNX Runtime backend: one ``InferenceSession`` per graph of an export folder.

    backend = OrtBackend("export/tiny", precision="fp32")          # CPU everywhere
    backend = OrtBackend("export/ffhq", providers="cuda")           # needs onnxruntime-gpu

``providers="auto"`` takes TensorRT and CUDA execution providers when this onnxruntime has them
(``onnxruntime-gpu``), always with the CPU provider last. On a CUDA provider the stages use IO
binding: each stage's outputs stay on the device as ``OrtValue`` and are bound as the next stage's
inputs, so only the face goes in and only the protected image comes out (see ``open_pipeline``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import BackendError, ExportError
from ..export.layout import ORT_INT8
from .doctor import PIP_ORT_GPU
from .base import STAGE_IO, ModelInfo
from .manifest import REEXPORT, ExportManifest, GraphEntry
from .stream import FramePipeline, ThreadPipeline

log = logging.getLogger("anonymixer.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
SHORT_NAMES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}
DEVICE_PROVIDERS = (TENSORRT, CUDA)       # providers whose tensors live in CUDA memory
FP32_FALLBACK_STAGES = ("mapping", "mixer")  # tiny graphs an export may keep in fp32 only

Provider = str | tuple[str, dict[str, Any]]


def choose_providers(wanted: str | Sequence[Provider], available: Sequence[str], device_id: int = 0,
                     trt_cache: Path | None = None) -> list[Provider]:
    """Execution providers for ``wanted`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"tensorrt"`` or a list).

    ``auto`` picks TensorRT, then CUDA, when ``available`` has them; CPU is always last. Asking for
    a provider this onnxruntime lacks is a ``BackendError`` naming the pip command that adds it.
    """
    if isinstance(wanted, str):
        if wanted == "auto":
            names: list[Provider] = [p for p in DEVICE_PROVIDERS if p in available]
        else:
            names = [SHORT_NAMES.get(wanted.lower(), wanted)]
    else:
        names = [SHORT_NAMES.get(p.lower(), p) if isinstance(p, str) else p for p in wanted]
    chosen: list[Provider] = []
    for provider in names:
        name = provider if isinstance(provider, str) else provider[0]
        if name not in available:
            raise BackendError(f"onnxruntime {ort.__version__} has no {name} (it has {', '.join(available)}); "
                               f"for CUDA/TensorRT: {PIP_ORT_GPU}")
        if isinstance(provider, tuple) or name == CPU:
            chosen.append(provider)
        elif name == CUDA:
            chosen.append((CUDA, {"device_id": device_id}))
        elif name == TENSORRT:
            options: dict[str, Any] = {"device_id": device_id}
            if trt_cache is not None:   # engines built by the provider are reused across runs
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache),
                               trt_timing_cache_enable=True, trt_timing_cache_path=str(trt_cache))
            chosen.append((TENSORRT, options))
        else:
            chosen.append(name)
    if CPU not in [p if isinstance(p, str) else p[0] for p in chosen]:
        chosen.append(CPU)
    return chosen


# What every session is given, and why (stated in bench reports).
SESSION_OPTIONS = {
    "graph_optimization_level": "ORT_ENABLE_ALL (constant folding, fusions, and on the CPU the NCHWc "
                                "layout that its convolutions are fastest in)",
    "execution_mode": "ORT_SEQUENTIAL, inter_op_num_threads 1 (each graph is a chain: nothing to run side by side)",
    "intra_op_num_threads": "--threads, or ONNX Runtime's default: one per physical core",
    "intra_op.allow_spinning": "0: stages and frames run concurrently, so idle threads must sleep, not spin "
                               "and starve the other stages' threads of the same cores",
    "enable_cpu_mem_arena": "on: buffers are reused from frame to frame, memory stays at its first-frame peak",
    "log_severity_level": "3 (errors only)",
}


def session_options(threads: int | None) -> ort.SessionOptions:
    """The ``SessionOptions`` of every graph (``SESSION_OPTIONS`` says why each is set so)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = True
    return options


class OrtStage:
    """One graph in one ``InferenceSession``; NumPy in and out, or ``OrtValue``s with IO binding."""

    def __init__(self, graph: GraphEntry, providers: list[Provider], threads: int | None,
                 device_id: int = 0, io_binding: bool | None = None) -> None:
        self.stage = graph.stage
        self.input_names, self.output_names = STAGE_IO[graph.stage]
        options = session_options(threads)
        try:
            self.session = ort.InferenceSession(str(graph.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ExportError(f"{graph.path}: onnxruntime cannot load this graph ({first}); {REEXPORT}") from None
        names = ([i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()])
        if tuple(names[0]) != self.input_names or tuple(names[1]) != self.output_names:
            raise ExportError(f"{graph.path}: graph I/O is {names[0]} -> {names[1]}, expected "
                              f"{list(self.input_names)} -> {list(self.output_names)}; {REEXPORT}")
        self.providers = self.session.get_providers()
        on_device = any(p in DEVICE_PROVIDERS for p in self.providers)
        self.device = ("cuda" if on_device else "cpu", device_id)
        # IO binding is what keeps tensors on the GPU; on the CPU plain run() is as fast and simpler.
        self.io_binding = on_device if io_binding is None else io_binding

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named float32 arrays in, named float32 arrays out (shapes as ``STAGE_IO``)."""
        arrays = {name: np.ascontiguousarray(feeds[name], dtype=np.float32) for name in self.input_names}
        if self.io_binding:
            return {name: value.numpy() for name, value in self.run_bound(arrays).items()}
        outputs = self.session.run(list(self.output_names), arrays)
        return dict(zip(self.output_names, outputs))

    def run_bound(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """IO binding: inputs are NumPy arrays (copied in) or ``OrtValue``s already on ``self.device``;
        outputs are ``OrtValue``s that ONNX Runtime allocates on ``self.device`` and that stay there."""
        binding = self.session.io_binding()
        for name in self.input_names:
            value = feeds[name]
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value, dtype=np.float32))
            else:
                binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device[0], self.device[1])
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.get_outputs()))

    def to_device(self, array: np.ndarray) -> Any:
        """``array`` as an ``OrtValue`` on this stage's device (one copy, done now)."""
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array, dtype=np.float32), *self.device)


def choose_graph(manifest: ExportManifest, stage: str, precision: str, cpu_only: bool) -> GraphEntry:
    """The graph of ``stage`` to run at ``precision``: INT8 in ONNX Runtime's CPU form when only the CPU
    provider runs and the folder has it; mapping and mixer in FP32 when the folder has them only so."""
    if precision == "int8" and cpu_only and ORT_INT8 in (manifest.data["graphs"].get(stage) or {}):
        return manifest.graph(stage, ORT_INT8)
    if precision != "fp32" and stage in FP32_FALLBACK_STAGES and precision not in manifest.precisions(stage):
        return manifest.graph(stage, "fp32")
    return manifest.graph(stage, precision)


class OrtBackend:
    """The four graphs of an export folder (``anonymixer export``) on ONNX Runtime.

    ``precision`` picks ``encoder.onnx`` / ``encoder.fp16.onnx`` / ``encoder.int8.onnx``; mapping
    and mixer fall back to fp32 when the folder has them only in fp32. On the CPU provider alone,
    ``int8`` takes ONNX Runtime's integer form (``encoder.int8-ort.onnx``, ``export.int8_ort``) where
    the folder has it: the Q/DQ form is TensorRT's, and runs slower than FP32 on the CPU. ``providers``: see
    ``choose_providers``. ``threads``: intra-op threads per session (default: ONNX Runtime's).
    ``output_resolution`` is checked against the folder (early exit is baked in at export).
    Each graph file (and its external data) is checked against the manifest's sha256 before it
    is loaded (``ExportManifest.verify_file``); there is no way to skip the check.
    """

    name = "ort"

    def __init__(self, onnx_dir: str | os.PathLike[str], precision: str = "fp32",
                 providers: str | Sequence[Provider] = "auto", threads: int | None = None,
                 output_resolution: int | None = None, device_id: int = 0, io_binding: bool | None = None) -> None:
        self.manifest = ExportManifest(onnx_dir)
        self.manifest.check_output_resolution(output_resolution)
        self.info: ModelInfo = self.manifest.model_info()
        self.precision = precision
        chosen = choose_providers(providers, ort.get_available_providers(), device_id,
                                  trt_cache=self.manifest.folder / "ort-trt-cache")
        self.stages: dict[str, OrtStage] = {}
        self.precisions: dict[str, str] = {}
        cpu_only = all((p if isinstance(p, str) else p[0]) == CPU for p in chosen)
        for stage in STAGE_IO:
            graph = choose_graph(self.manifest, stage, precision, cpu_only)
            graph.verify()
            self.stages[stage] = OrtStage(graph, chosen, threads, device_id, io_binding)
            self.precisions[stage] = graph.precision

    def stage(self, name: str) -> OrtStage:
        return self.stages[name]

    @property
    def providers(self) -> list[str]:
        return self.stages["encoder"].providers if self.stages else []

    def describe(self) -> str:
        short = ", ".join(p.replace("ExecutionProvider", "") for p in self.providers)
        binding = ", IO binding" if self.stages and self.stages["encoder"].io_binding else ""
        form = ", QOperator form" if ORT_INT8 in self.precisions.values() else ""
        return f"onnxruntime {ort.__version__} on {short} ({self.precision}{form}{binding})"

    def open_pipeline(self, key_feeds: Mapping[str, np.ndarray], inflight: int) -> FramePipeline:
        """Frames through encoder -> mixer -> generator with ``inflight`` frames in flight (threads).

        ``key_feeds``: the mixer's key inputs (``KeyMaterial.feeds()``). With IO binding they are
        copied to the device once here, and ``w_real``/``w_prot`` never leave it; ONNX Runtime
        releases the GIL while a session runs, so stages overlap.
        """
        encoder, mixer, generator = (self.stages[s] for s in ("encoder", "mixer", "generator"))
        steps: list[Callable[[Any], Any]]
        if encoder.io_binding:
            keys = {name: mixer.to_device(array) for name, array in key_feeds.items()}
            steps = [lambda face: encoder.run_bound({"face": face})["w_real"],
                     lambda w_real: mixer.run_bound({"w_real": w_real, **keys})["w_prot"],
                     lambda w_prot: generator.run_bound({"w_prot": w_prot})["image"].numpy()]
        else:
            steps = [lambda face: encoder.run({"face": face})["w_real"],
                     lambda w_real: mixer.run({"w_real": w_real, **key_feeds})["w_prot"],
                     lambda w_prot: generator.run({"w_prot": w_prot})["image"]]
        return ThreadPipeline(steps, inflight, names=("encoder", "mixer", "generator"))

    def close(self) -> None:
        self.stages.clear()

    def __enter__(self) -> "OrtBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
