"""How one stage call is timed: the wall clock on the CPU, CUDA events on a GPU.

A clock runs untimed warm-up calls of a stage on fixed inputs until its times settle, then timed
ones, and returns the latencies (ms), the last outputs (NumPy, for the next stage and for
accuracy) and what the warm-up did (``StageTiming``). The loop is the same for every clock
(``timed_calls``); a clock only says how one call is made and timed:

- ``WallClock`` (CPU backends): ``time.perf_counter`` around ``StageRunner.run``. On the CPU the
  call *is* the work; NumPy <-> tensor conversions are included (they are views, no copies).
- ``TorchCudaClock``: inputs copied to the GPU once; ``torch.cuda.Event`` pairs around the module
  on the current stream: device time of the stage, no host copies.
- ``TrtClock``: device buffers filled once; cuda-python events around ``execute_async_v3`` on a
  stream of its own (what ``trtexec --noDataTransfers`` times: see ``trtexec_command``).
- ``OrtDeviceClock`` (ONNX Runtime on CUDA, IO binding): inputs are device ``OrtValue``s, outputs
  stay on the device. ONNX Runtime's ``run`` returns once the stream is done and exposes no
  events, so this is ``perf_counter`` around a synchronous call: device time plus launch overhead.

**Warm-up until settled.** First calls are slow (kernel selection, memory arenas growing, lazy
initialisation, caches, clocks ramping up), and a few of them among the timed calls make a p99
that says nothing about the steady state. So after ``warmup`` untimed calls (the minimum; 0 turns
warm-up off), untimed calls go on until the median of the last ``Settle.window`` calls is within
``Settle.tolerance`` of the median of the ``window`` calls before them, or until ``Settle.max_calls``
calls or ``Settle.max_s`` seconds; the result says which (``warmup["settled"]``).

**How many timed calls.** ``iters`` calls, or with ``iters=None`` (the default of ``anonymixer
bench``) at least ``AUTO_ITERS.min_calls`` calls and ``AUTO_ITERS.min_s`` seconds of them, at most
``AUTO_ITERS.max_calls``: a millisecond stage gets enough calls for a meaningful p99, a stage of
half a second does not take minutes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..runtime.base import STAGE_IO

BENCH_SLOT = -2   # TensorRT execution-context slot of the benchmark (the runtime uses -1 and 0..N)


@dataclass(frozen=True)
class Settle:
    """When warm-up stops: the medians of two successive windows of ``window`` calls agree within
    ``tolerance`` (relative), or ``max_calls`` / ``max_s`` is reached (then not settled)."""

    window: int = 5
    tolerance: float = 0.10
    max_calls: int = 100
    max_s: float = 10.0


@dataclass(frozen=True)
class AutoIters:
    """Timed calls when none are asked for: at least ``min_calls`` and ``min_s`` seconds, at most ``max_calls``."""

    min_calls: int = 10
    min_s: float = 2.0
    max_calls: int = 200


SETTLE = Settle()
AUTO_ITERS = AutoIters()
FIXED_ITERS = 10   # whole frames and in-flight batches per measurement (anonymixer.bench.measure) without --iters


@dataclass
class StageTiming:
    """``samples``: latency of each timed call, ms; ``outputs``: the last call's; ``warmup``:
    ``{"calls", "settled", "seconds", "last_ms"}`` (``last_ms``: the median of the last window)."""

    samples: list[float]
    outputs: dict[str, np.ndarray]
    warmup: dict[str, Any] = field(default_factory=dict)


def warm_up(call: Callable[[], float], minimum: int, settle: Settle = SETTLE) -> dict[str, Any]:
    """Untimed ``call()``s (each returns its own time, ms) until settled (see the module docstring)."""
    if minimum <= 0:
        return {"calls": 0, "settled": False, "seconds": 0.0, "last_ms": None}
    times: list[float] = []
    start = time.perf_counter()
    window = settle.window
    while True:
        times.append(call())
        elapsed = time.perf_counter() - start
        last = statistics.median(times[-window:])
        if len(times) >= max(minimum, 2 * window):
            before = statistics.median(times[-2 * window:-window])
            if abs(last - before) <= settle.tolerance * before:
                return {"calls": len(times), "settled": True, "seconds": elapsed, "last_ms": last}
        if len(times) >= max(minimum, settle.max_calls) or (elapsed >= settle.max_s and len(times) >= minimum):
            return {"calls": len(times), "settled": False, "seconds": elapsed, "last_ms": last}


def timed_calls(call: Callable[[], float], warmup: int, iters: int | None,
                settle: Settle = SETTLE, auto: AutoIters = AUTO_ITERS) -> tuple[list[float], dict[str, Any]]:
    """Warm up (``warm_up``), then the timed calls (``iters``, or ``None``: ``auto``): ``(samples, warm-up)``."""
    warm = warm_up(call, warmup, settle)
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        samples.append(call())
        if iters is not None:
            if len(samples) >= iters:
                break
        elif len(samples) >= auto.max_calls or (len(samples) >= auto.min_calls
                                                  and time.perf_counter() - start >= auto.min_s):
            break
    return samples, warm


class StageClock(Protocol):
    timer: str    # what the samples measure: "perf_counter", "cuda_event", ...

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int | None) -> StageTiming:
        """Warm-up calls (at least ``warmup``, until settled), then the timed calls (``timed_calls``)."""
        ...


class WallClock:
    timer = "perf_counter"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int | None) -> StageTiming:
        runner = self.backend.stage(stage)
        out: dict[str, np.ndarray] = {}

        def call() -> float:
            nonlocal out
            start = time.perf_counter()
            out = runner.run(feeds)
            return (time.perf_counter() - start) * 1000.0

        samples, warm = timed_calls(call, warmup, iters)
        return StageTiming(samples, out, warm)


class TorchCudaClock:
    timer = "cuda_event"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int | None) -> StageTiming:
        import torch

        runner = self.backend.stage(stage)
        names_in, names_out = STAGE_IO[stage]
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.float32)).to(runner.device)
                    for n in names_in]
            out = None

            def call() -> float:
                nonlocal out
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = runner.module(*args)
                end.record()
                end.synchronize()
                return float(start.elapsed_time(end))

            samples, warm = timed_calls(call, warmup, iters)
            assert out is not None
            return StageTiming(samples, {names_out[0]: out.float().cpu().numpy()}, warm)


class OrtDeviceClock:
    timer = "perf_counter (synchronous ONNX Runtime run on CUDA, IO binding)"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int | None) -> StageTiming:
        runner = self.backend.stage(stage)
        bound = {name: runner.to_device(feeds[name]) for name in runner.input_names}
        out: dict[str, Any] = {}

        def call() -> float:
            nonlocal out
            start = time.perf_counter()
            out = runner.run_bound(bound)
            return (time.perf_counter() - start) * 1000.0

        samples, warm = timed_calls(call, warmup, iters)
        return StageTiming(samples, {name: value.numpy() for name, value in out.items()}, warm)


class TrtClock:
    timer = "cuda_event"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def time_stage(self, stage: str, feeds: Mapping[str, np.ndarray], warmup: int,
                   iters: int | None) -> StageTiming:
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
            stream.synchronize()

            def call() -> float:
                start.record(stream)
                runner.enqueue(BENCH_SLOT, buffers, stream, batch)
                end.record(stream)
                end.synchronize()
                return float(end.elapsed_ms(start))

            samples, warm = timed_calls(call, warmup, iters)
            outputs = {}
            for name in runner.output_names:
                copy_async(hosts[name], buffers[name], sizes[name], stream)
                outputs[name] = hosts[name].view(runner.shape(name, batch))
            stream.synchronize()
            return StageTiming(samples, {name: view.copy() for name, view in outputs.items()}, warm)
        finally:
            for event in (start, end):
                event.destroy()
            stream.destroy()
            for device_buffer in buffers.values():
                device_buffer.free()
            for host_buffer in hosts.values():
                host_buffer.free()


def trtexec_command(engine: str, shapes: Mapping[str, tuple[int, ...]], batch: int, iterations: int,
                    batched: tuple[str, ...]) -> str:
    """The ``trtexec`` line that times ``engine`` the way ``TrtClock`` does: the same input shapes
    (``shapes``: each input's shape without the batch axis; ``batched``: the inputs that have one,
    at ``batch``), inputs already on the device (``--noDataTransfers``), GPU compute time per
    call with the same percentiles, after a warm-up. Compare its "GPU Compute Time" lines with
    the row's p50/p99."""
    dims = [f"{name}:" + "x".join(str(d) for d in (batch, *shapes[name])) for name in batched]
    return (f"trtexec --loadEngine={engine} --shapes={','.join(dims)} --noDataTransfers --warmUp=2000 "
            f"--duration=0 --iterations={iterations} --percentile=50,90,99")


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
