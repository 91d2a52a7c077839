"""How one stage call is timed: the wall clock on the CPU, CUDA events on a GPU.

A clock runs ``warmup`` untimed calls of a stage on fixed inputs, then ``iters`` timed ones, and
returns the latencies (ms) and the last outputs (NumPy, for the next stage and for accuracy).

- ``WallClock`` (CPU backends): ``time.perf_counter`` around ``StageRunner.run``. On the CPU the
  call *is* the work; NumPy <-> tensor conversions are included (they are views, no copies).
- ``TorchCudaClock``: inputs copied to the GPU once; ``torch.cuda.Event`` pairs around the module
  on the current stream: device time of the stage, no host copies.
- ``TrtClock``: device buffers filled once; cuda-python events around ``execute_async_v3`` on a
  stream of its own.
- ``OrtDeviceClock`` (ONNX Runtime on CUDA, IO binding): inputs are device ``OrtValue``s, outputs
  stay on the device. ONNX Runtime's ``run`` returns once the stream is done and exposes no
  events, so this is ``perf_counter`` around a synchronous call: device time plus launch overhead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from ..runtime.base import STAGE_IO

BENCH_SLOT = -2   # TensorRT execution-context slot of the benchmark (the runtime uses -1 and 0..N)


class StageClock(Protocol):
    timer: str    # what the samples measure: "perf_counter", "cuda_event", ...

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int) -> tuple[list[float], dict[str, np.ndarray]]:
        """``iters`` latencies in ms after ``warmup`` untimed calls, and the last call's outputs."""
        ...


class WallClock:
    timer = "perf_counter"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int) -> tuple[list[float], dict[str, np.ndarray]]:
        runner = self.backend.stage(stage)
        out: dict[str, np.ndarray] = {}
        for _ in range(warmup):
            out = runner.run(feeds)
        samples = []
        for _ in range(iters):
            start = time.perf_counter()
            out = runner.run(feeds)
            samples.append((time.perf_counter() - start) * 1000.0)
        return samples, out


class TorchCudaClock:
    timer = "cuda_event"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int) -> tuple[list[float], dict[str, np.ndarray]]:
        import torch

        runner = self.backend.stage(stage)
        names_in, names_out = STAGE_IO[stage]
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.float32)).to(runner.device)
                    for n in names_in]
            out = None
            for _ in range(warmup):
                out = runner.module(*args)
            samples = []
            for _ in range(iters):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = runner.module(*args)
                end.record()
                end.synchronize()
                samples.append(float(start.elapsed_time(end)))
            assert out is not None
            return samples, {names_out[0]: out.float().cpu().numpy()}


class OrtDeviceClock:
    timer = "perf_counter (synchronous ONNX Runtime run on CUDA, IO binding)"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int) -> tuple[list[float], dict[str, np.ndarray]]:
        runner = self.backend.stage(stage)
        bound = {name: runner.to_device(feeds[name]) for name in runner.input_names}
        out: dict[str, Any] = {}
        for _ in range(warmup):
            out = runner.run_bound(bound)
        samples = []
        for _ in range(iters):
            start = time.perf_counter()
            out = runner.run_bound(bound)
            samples.append((time.perf_counter() - start) * 1000.0)
        return samples, {name: value.numpy() for name, value in out.items()}


class TrtClock:
    timer = "cuda_event"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int) -> tuple[list[float], dict[str, np.ndarray]]:
        from ..runtime.cuda import DeviceBuffer, Event, PinnedBuffer, Stream, copy_async

        runner = self.backend.stage(stage)
        batch = int(feeds[runner.input_names[0]].shape[0])
        sizes = {name: math.prod(runner.shape(name, batch)) * 4 for name in runner.sample_shapes}
        buffers = {name: DeviceBuffer(n) for name, n in sizes.items()}
        hosts = {name: PinnedBuffer(n) for name, n in sizes.items()}
        stream, start, end = Stream(), Event(), Event()
        try:
            for name in runner.input_names:
                array = np.ascontiguousarray(feeds[name], dtype=np.float32)
                hosts[name].view(array.shape)[...] = array
                copy_async(buffers[name], hosts[name], array.nbytes, stream)
            for _ in range(warmup):
                runner.enqueue(BENCH_SLOT, buffers, stream, batch)
            stream.synchronize()
            samples = []
            for _ in range(iters):
                start.record(stream)
                runner.enqueue(BENCH_SLOT, buffers, stream, batch)
                end.record(stream)
                end.synchronize()
                samples.append(end.elapsed_ms(start))
            outputs = {}
            for name in runner.output_names:
                copy_async(hosts[name], buffers[name], sizes[name], stream)
                outputs[name] = hosts[name].view(runner.shape(name, batch))
            stream.synchronize()
            return samples, {name: view.copy() for name, view in outputs.items()}
        finally:
            for event in (start, end):
                event.destroy()
            stream.destroy()
            for device_buffer in buffers.values():
                device_buffer.free()
            for host_buffer in hosts.values():
                host_buffer.free()


def choose_clock(backend: Any) -> StageClock:
    """The clock for an opened backend (see the module docstring)."""
    if backend.name == "trt":
        return TrtClock(backend)
    if backend.name == "torch" and getattr(backend, "device", None) is not None and backend.device.type == "cuda":
        return TorchCudaClock(backend)
    if backend.name == "ort" and backend.stage("encoder").io_binding:
        return OrtDeviceClock(backend)
    return WallClock(backend)


def device_memory_mb(device: str) -> float | None:
    """GPU memory in use on the whole device (``cudaMemGetInfo``: total - free), MiB; None on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(torch.device(device))
    return (total - free) / 2**20
