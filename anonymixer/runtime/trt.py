"""The TensorRT backend: one engine per graph, driven through ``runtime.cuda`` (cuda-python, or PyCUDA).

    backend = TrtBackend("engines/ffhq")                 # a folder from `anonymixer build`

Each engine is checked against its sidecar before TensorRT sees it (``engines.check_engine``).
A stage binds named I/O tensors (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``) to
device buffers with ``set_tensor_address``, sets the batch with ``set_input_shape`` and runs with
``execute_async_v3(stream)``. Each in-flight slot has its own execution context, so frames on
different streams never share one; with ``cuda_graphs=True`` a slot's work is captured into a CUDA
graph after one warm-up run and replayed while its batch and buffer addresses stay the same.
TensorRT and cuda-python are imported when a backend is opened, never at module import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError, EngineError, EngineIntegrityError
from ..export.layout import ENGINE_FOLDER, MANIFEST, PRECISIONS
from .base import FRAME_STAGES, STAGE_IO, ModelInfo
from .cuda import CudaGraph, DeviceBuffer, PinnedBuffer, Stream, binding, copy_async, device_info, set_device
from .engines import (KEY_INPUTS, EngineTarget, check_engine, engine_filename, require_tensorrt,
                      sidecar_path)
from .manifest import ExportManifest, rebuild_command
from .stream import DevicePipeline, FramePipeline

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger("anonymixer.runtime")

PRIVATE_SLOT = -1   # the slot of ``run()``: one frame, its own stream and buffers


class TrtStage:
    """One engine; ``run`` for NumPy in/out, ``enqueue`` for device buffers on a stream.

    ``sample_shapes``: each I/O tensor's shape without the batch axis. ``io_mode``:
    ``trt.TensorIOMode`` (imported when not given; tests pass a stand-in).
    """

    def __init__(self, stage: str, engine: "trt.ICudaEngine", sample_shapes: Mapping[str, tuple[int, ...]],
                 cuda_graphs: bool = False, io_mode: Any = None) -> None:
        if io_mode is None:
            import tensorrt as trt

            io_mode = trt.TensorIOMode
        self.stage, self.engine, self.cuda_graphs = stage, engine, cuda_graphs
        self.input_names, self.output_names = STAGE_IO[stage]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == io_mode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == io_mode.OUTPUT]
        if sorted(inputs) != sorted(self.input_names) or sorted(outputs) != sorted(self.output_names):
            raise EngineError(f"{stage} engine has I/O {inputs} -> {outputs}, expected "
                              f"{list(self.input_names)} -> {list(self.output_names)}; rebuild it with `anonymixer build`")
        self.sample_shapes = {name: tuple(sample_shapes[name]) for name in names}
        first = self.input_names[0]
        self.max_batch = int(engine.get_tensor_profile_shape(first, 0)[2][0])
        self.contexts: dict[int, Any] = {}
        self.bound: dict[int, dict[str, int]] = {}       # slot -> tensor name -> bound address
        self.graphs: dict[int, tuple[int, CudaGraph]] = {}  # slot -> (batch, captured graph)
        self.own: dict[str, tuple[DeviceBuffer, PinnedBuffer]] = {}
        self.own_stream: Stream | None = None

    def _context(self, slot: int) -> Any:
        if slot not in self.contexts:
            context = self.engine.create_execution_context()
            if context is None:
                raise BackendError(f"TensorRT could not create an execution context for the {self.stage} engine "
                                   "(out of GPU memory?); lower --inflight")
            self.contexts[slot] = context
        return self.contexts[slot]

    def shape(self, name: str, batch: int) -> tuple[int, ...]:
        """The shape of tensor ``name`` at ``batch`` (key material has no batch axis)."""
        if name in KEY_INPUTS:
            return tuple(self.sample_shapes[name])
        return (batch, *self.sample_shapes[name])

    def enqueue(self, slot: int, buffers: Mapping[str, Any], stream: Stream, batch: int) -> None:
        """Queue this engine on ``stream``: inputs read from and outputs written to ``buffers[name].ptr``."""
        if batch > self.max_batch:
            raise BackendError(f"batch of {batch} exceeds the {self.stage} engine's profile (max {self.max_batch}); "
                               "rebuild with a larger --batch MIN,OPT,MAX")
        context = self._context(slot)
        addresses = {name: int(buffers[name].ptr) for name in self.sample_shapes}
        if self.bound.get(slot) != addresses:
            for name, address in addresses.items():
                if not context.set_tensor_address(name, address):
                    raise BackendError(f"TensorRT refused the address of {name!r} in the {self.stage} engine")
            self.bound[slot] = addresses
            self._drop_graph(slot)
        for name in self.input_names:
            if not context.set_input_shape(name, self.shape(name, batch)):
                raise BackendError(f"TensorRT refused shape {self.shape(name, batch)} for {name!r} "
                                   f"of the {self.stage} engine; rebuild with a matching --batch")
        if not self.cuda_graphs:
            self._execute(context, stream)
            return
        captured = self.graphs.get(slot)
        if captured is not None and captured[0] == batch:
            captured[1].launch(stream)
            return
        if captured is not None:
            stream.synchronize()                # its last launch must finish before it is destroyed
            self._drop_graph(slot)
        self._execute(context, stream)          # warm-up: settles shapes and lazy allocations
        graph = CudaGraph(stream, lambda s: self._execute(context, s))
        self.graphs[slot] = (batch, graph)

    def _execute(self, context: Any, stream: Stream) -> None:
        if not context.execute_async_v3(stream.handle):
            raise BackendError(f"TensorRT failed to enqueue the {self.stage} engine (see TensorRT's log)")

    def _drop_graph(self, slot: int) -> None:
        captured = self.graphs.pop(slot, None)
        if captured is not None:
            captured[1].destroy()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named float32 arrays in and out, through pinned buffers on this stage's own stream."""
        arrays = {name: np.ascontiguousarray(feeds[name], dtype=np.float32) for name in self.input_names}
        batch = arrays[self.input_names[0]].shape[0]
        if self.own_stream is None:
            self.own_stream = Stream()
        stream = self.own_stream
        for name in self.sample_shapes:
            nbytes = int(np.prod(self.shape(name, batch))) * 4
            if name not in self.own or self.own[name][0].nbytes < nbytes:
                self._free_own(name)
                self.own[name] = (DeviceBuffer(nbytes), PinnedBuffer(nbytes))
        for name, array in arrays.items():
            device, host = self.own[name]
            host.view(array.shape)[...] = array
            copy_async(device, host, array.nbytes, stream)
        self.enqueue(PRIVATE_SLOT, {name: pair[0] for name, pair in self.own.items()}, stream, batch)
        outputs = {}
        for name in self.output_names:
            shape = self.shape(name, batch)
            device, host = self.own[name]
            copy_async(host, device, int(np.prod(shape)) * 4, stream)
            outputs[name] = host.view(shape)
        stream.synchronize()
        return {name: view.copy() for name, view in outputs.items()}

    def _free_own(self, name: str) -> None:
        pair = self.own.pop(name, None)
        if pair is not None:
            pair[0].free()
            pair[1].free()

    def close(self) -> None:
        for slot in list(self.graphs):
            self._drop_graph(slot)
        for name in list(self.own):
            self._free_own(name)
        if self.own_stream is not None:
            self.own_stream.destroy()
            self.own_stream = None
        self.contexts.clear()


def current_target(device_id: int = 0) -> EngineTarget:
    """This machine's TensorRT version and GPU (imports TensorRT and cuda-python)."""
    version = require_tensorrt()
    gpu = device_info(device_id)
    return EngineTarget(tensorrt_version=version, gpu_name=gpu.name, compute_capability=gpu.compute_capability)


class TrtBackend:
    """The four engines of a folder written by ``anonymixer build``.

    ``precision``: which engines to load (default: the one precision the folder has).
    ``cuda_graphs``: capture each slot's engine launch in a CUDA graph after a warm-up.
    ``output_resolution`` is checked against the folder (fixed at export).
    """

    name = "trt"

    def __init__(self, engines_dir: str | os.PathLike[str], precision: str | None = None, device_id: int = 0,
                 cuda_graphs: bool = False, output_resolution: int | None = None) -> None:
        folder = Path(engines_dir)
        if not (folder / MANIFEST).is_file():
            raise EngineError(f"{folder}: not an engine folder (no {MANIFEST}); build one with "
                              f"`anonymixer build --onnx ONNX_DIR --out {folder}`")
        manifest = ExportManifest(folder)
        manifest.check_output_resolution(output_resolution)
        self.info: ModelInfo = manifest.model_info()
        self.folder, self.precision = folder, precision or self._only_precision(folder)
        self._verify(manifest)
        target = current_target(device_id)
        set_device(device_id)
        if cuda_graphs and not binding().has_graphs:
            raise BackendError(f"CUDA graphs need cuda-python; this machine runs {binding().name}: "
                               "drop cuda_graphs, or pip install cuda-python")
        import tensorrt as trt

        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        info = self.info
        samples = {"face": (3, info.input_size, info.input_size), "z": (info.style_dim,),
                   "w_real": (info.n_latent, info.style_dim), "w_key": (info.n_latent, info.style_dim),
                   "key_matrix": (info.style_dim, info.style_dim), "key_offset": (info.n_latent, info.style_dim),
                   "w_prot": (info.n_latent, info.style_dim),
                   "image": (3, info.output_resolution, info.output_resolution)}
        self.stages: dict[str, TrtStage] = {}
        self.keys: dict[bytes, DeviceBuffer] = {}
        for stage in STAGE_IO:
            self.stages[stage] = TrtStage(stage, self._load(stage, target), samples, cuda_graphs)
        self.device_name = f"{target.gpu_name} (TensorRT {target.tensorrt_version})"

    @staticmethod
    def _only_precision(folder: Path) -> str:
        found = [p for p in PRECISIONS if (folder / engine_filename("encoder", p)).is_file()]
        if not found:
            raise EngineError(f"{folder}: no engine files; build them with "
                              f"`anonymixer build --onnx ONNX_DIR --out {folder}`")
        if len(found) > 1:
            raise EngineError(f"{folder}: has {', '.join(found)} engines; choose one with --precision")
        return found[0]

    def _verify(self, manifest: ExportManifest) -> None:
        """Every engine and sidecar of the chosen precision, against the folder's manifest (before any GPU work)."""
        if not manifest.is_engine_folder:
            raise EngineIntegrityError(
                f"{manifest.path}: not an engine folder manifest (no {ENGINE_FOLDER!r} table: an older "
                f"`anonymixer build`?), so its engines cannot be checked; rebuild with "
                f"`{rebuild_command(None, self.folder, self.precision, None)}`")
        for stage in STAGE_IO:
            name = engine_filename(stage, self.precision)
            manifest.verify_file(name, self.precision)
            manifest.verify_file(sidecar_path(Path(name)).name, self.precision)

    def _load(self, stage: str, target: EngineTarget) -> "trt.ICudaEngine":
        path = self.folder / engine_filename(stage, self.precision)
        sidecar = check_engine(path, target, verify_hash=False)  # _verify hashed it against the manifest
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineError(f"{path}: TensorRT cannot deserialize this engine (corrupt file?); rebuild with "
                              f"`anonymixer build --onnx {sidecar['onnx']['dir']} --out {self.folder} "
                              f"--precision {self.precision}`")
        return engine

    def stage(self, name: str) -> TrtStage:
        return self.stages[name]

    def describe(self) -> str:
        return f"TensorRT on {self.device_name} ({self.precision} engines)"

    def device_key(self, key_array: np.ndarray) -> DeviceBuffer:
        """A key input in device memory, copied once per key and kept for the backend's lifetime."""
        array = np.ascontiguousarray(key_array, dtype=np.float32)
        tag = array.tobytes()
        if tag not in self.keys:
            buffer, host, stream = DeviceBuffer(array.nbytes), PinnedBuffer(array.nbytes), Stream()
            host.view(array.shape)[...] = array
            copy_async(buffer, host, array.nbytes, stream)
            stream.synchronize()
            host.free()
            stream.destroy()
            self.keys[tag] = buffer
        return self.keys[tag]

    def open_pipeline(self, key_feeds: Mapping[str, np.ndarray], inflight: int) -> FramePipeline:
        """``inflight`` frames on their own streams; buffers sized from the engines' profiles.
        ``key_feeds``: the mixer's key inputs (``KeyMaterial.feeds()``), copied to the device once."""
        shapes = self.stages["encoder"].sample_shapes | self.stages["generator"].sample_shapes | {
            "w_prot": self.stages["mixer"].sample_shapes["w_prot"]}
        return DevicePipeline({name: shapes[name] for name in ("face", "w_real", "w_prot", "image")},
                              [(s, self.stages[s].enqueue) for s in FRAME_STAGES], inflight,
                              max_batch=min(self.stages[s].max_batch for s in FRAME_STAGES),
                              shared={name: self.device_key(array) for name, array in key_feeds.items()})

    def close(self) -> None:
        for stage in self.stages.values():
            stage.close()
        self.stages.clear()
        for buffer in self.keys.values():
            buffer.free()
        self.keys.clear()

    def __enter__(self) -> "TrtBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

