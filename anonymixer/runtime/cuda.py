"""CUDA through cuda-python (``cuda.bindings.runtime``), kept thin: the pattern of NVIDIA's
``samples/python/common_runtime.py``, with asynchronous copies and one stream per frame in flight.

- ``cuda_call(rt.cudaX(...))`` checks every return code and turns a failure into ``CudaError``;
- ``PinnedBuffer`` (page-locked host memory, so copies are truly asynchronous) and
  ``DeviceBuffer``; ``copy_async`` between them on a stream;
- ``Stream``, ``Event`` (ordering between streams, timing), ``CudaGraph`` (capture and replay);
- ``device_info`` for sidecars and ``anonymixer doctor``.

cuda-python is imported on first use, never at module import: CPU-only code can import this file.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CudaError

INSTALL = "pip install 'anonymixer[trt]' (cuda-python), with an NVIDIA driver"
_HINTS = {
    "cudaErrorInsufficientDriver": "no NVIDIA driver, or one too old for this cuda-python; run `anonymixer doctor`",
    "cudaErrorNoDevice": "no CUDA device on this machine; run `anonymixer doctor`",
    "CUDA_ERROR_NO_DEVICE": "no CUDA device on this machine; run `anonymixer doctor`",
    "cudaErrorMemoryAllocation": "out of GPU memory: lower --batch or --inflight",
    "CUDA_ERROR_OUT_OF_MEMORY": "out of GPU memory: lower --batch or --inflight",
}
_runtime: Any = None


def cudart() -> Any:
    """The cuda-python runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    global _runtime
    if _runtime is None:
        for name in ("cuda.bindings.runtime", "cuda.cudart"):
            try:
                _runtime = importlib.import_module(name)
                break
            except ImportError:
                continue
        else:
            raise CudaError(f"cuda-python is not installed: {INSTALL}")
    return _runtime


def describe_error(err: Any) -> str:
    """One line for a CUDA error code (a ``cudaError_t`` or ``CUresult``), with advice where we have it."""
    name = getattr(err, "name", None) or f"error {int(err)}"
    hint = _HINTS.get(name, "see the CUDA error name above; `anonymixer doctor` checks the setup")
    return f"CUDA call failed with {name} ({int(err)}): {hint}"


def cuda_call(result: Any) -> Any:
    """Check a cuda-python return value ``(err, *values)``; return the values (one unwrapped, none -> None).

    Every cuda-python call goes through this, so no error code is ever dropped.
    """
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        raise CudaError(describe_error(err))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class DeviceBuffer:
    """``nbytes`` of device memory (``cudaMalloc``); ``ptr`` is the address TensorRT binds."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr: int = int(cuda_call(cudart().cudaMalloc(max(self.nbytes, 1))))

    def free(self) -> None:
        if self.ptr:
            cuda_call(cudart().cudaFree(self.ptr))
            self.ptr = 0


class PinnedBuffer:
    """``nbytes`` of page-locked host memory (``cudaMallocHost``), seen as a NumPy byte array."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr: int = int(cuda_call(cudart().cudaMallocHost(max(self.nbytes, 1))))
        pointer = ctypes.cast(self.ptr, ctypes.POINTER(ctypes.c_uint8))
        self.bytes = np.ctypeslib.as_array(pointer, (max(self.nbytes, 1),))

    def view(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """The first ``prod(shape)`` items as an array of ``shape`` (no copy: it aliases pinned memory)."""
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if count > self.nbytes:
            raise CudaError(f"pinned buffer of {self.nbytes} bytes cannot hold {shape} {np.dtype(dtype)}")
        return self.bytes[:count].view(dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            cuda_call(cudart().cudaFreeHost(self.ptr))
            self.ptr = 0


class Stream:
    """A non-blocking CUDA stream; ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        rt = cudart()
        self.stream = cuda_call(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
        self.handle = int(self.stream)

    def wait(self, event: "Event") -> None:
        """Work queued on this stream after this call starts only once ``event`` has happened."""
        cuda_call(cudart().cudaStreamWaitEvent(self.stream, event.event, 0))

    def synchronize(self) -> None:
        cuda_call(cudart().cudaStreamSynchronize(self.stream))

    def destroy(self) -> None:
        if self.stream is not None:
            cuda_call(cudart().cudaStreamDestroy(self.stream))
            self.stream = None


class Event:
    """A CUDA event: a point in a stream that other streams (or the host) can wait for."""

    def __init__(self, timing: bool = True) -> None:
        rt = cudart()
        flags = rt.cudaEventDefault if timing else rt.cudaEventDisableTiming
        self.event = cuda_call(rt.cudaEventCreateWithFlags(flags))

    def record(self, stream: Stream) -> None:
        cuda_call(cudart().cudaEventRecord(self.event, stream.stream))

    def synchronize(self) -> None:
        cuda_call(cudart().cudaEventSynchronize(self.event))

    def done(self) -> bool:
        """Whether all work before the event has finished (does not block)."""
        err = cudart().cudaEventQuery(self.event)[0]
        if err.name == "cudaErrorNotReady":
            return False
        cuda_call((err,))
        return True

    def elapsed_ms(self, since: "Event") -> float:
        """Milliseconds from ``since`` to this event (both recorded, both with timing)."""
        return float(cuda_call(cudart().cudaEventElapsedTime(since.event, self.event)))

    def destroy(self) -> None:
        if self.event is not None:
            cuda_call(cudart().cudaEventDestroy(self.event))
            self.event = None


def copy_async(dst: PinnedBuffer | DeviceBuffer, src: PinnedBuffer | DeviceBuffer, nbytes: int,
               stream: Stream) -> None:
    """Queue a copy of ``nbytes`` from ``src`` to ``dst`` on ``stream`` (host<->device or device->device)."""
    if nbytes > min(dst.nbytes, src.nbytes):
        raise CudaError(f"copy of {nbytes} bytes does not fit buffers of {src.nbytes} -> {dst.nbytes} bytes")
    rt = cudart()
    kinds = {(PinnedBuffer, DeviceBuffer): rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
             (DeviceBuffer, PinnedBuffer): rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
             (DeviceBuffer, DeviceBuffer): rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
             (PinnedBuffer, PinnedBuffer): rt.cudaMemcpyKind.cudaMemcpyHostToHost}
    kind = kinds[(type(src), type(dst))]
    cuda_call(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.stream))


class CudaGraph:
    """Work queued by ``enqueue(stream)``, captured once and replayed with one launch.

    Valid only while the captured shapes and buffer addresses stay the same (TensorRT: run once
    without capture first, so that the execution context has settled its shapes).
    """

    def __init__(self, stream: Stream, enqueue: Callable[[Stream], None]) -> None:
        rt = cudart()
        cuda_call(rt.cudaStreamBeginCapture(stream.stream,
                                            rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            enqueue(stream)
        except BaseException:
            rt.cudaStreamEndCapture(stream.stream)   # abandon the capture; the original error is the one to see
            raise
        self.graph = cuda_call(rt.cudaStreamEndCapture(stream.stream))
        self.exec = cuda_call(rt.cudaGraphInstantiate(self.graph, 0))

    def launch(self, stream: Stream) -> None:
        cuda_call(cudart().cudaGraphLaunch(self.exec, stream.stream))

    def destroy(self) -> None:
        rt = cudart()
        if self.exec is not None:
            cuda_call(rt.cudaGraphExecDestroy(self.exec))
            self.exec = None
        if self.graph is not None:
            cuda_call(rt.cudaGraphDestroy(self.graph))
            self.graph = None


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to, and what ``anonymixer doctor`` reports."""

    index: int
    name: str
    compute_capability: str        # "8.7" (Orin), "9.0" (H100)
    total_memory_mb: int
    driver_version: str            # "12.4" from cudaDriverGetVersion
    runtime_version: str           # "12.9" of the CUDA runtime cuda-python links


def version_text(code: int) -> str:
    """CUDA's integer versions as text: ``12040 -> "12.4"``."""
    return f"{code // 1000}.{(code % 1000) // 10}"


def device_info(index: int = 0) -> DeviceInfo:
    """The CUDA device ``index``; ``CudaError`` (with advice) when there is no driver or device."""
    rt = cudart()
    driver = int(cuda_call(rt.cudaDriverGetVersion()))
    if driver == 0:
        raise CudaError("no NVIDIA driver on this machine (cudaDriverGetVersion returned 0); "
                        "run `anonymixer doctor`")
    count = int(cuda_call(rt.cudaGetDeviceCount()))
    if index >= count:
        raise CudaError(f"CUDA device {index} asked for, but this machine has {count}")
    props = cuda_call(rt.cudaGetDeviceProperties(index))
    name = props.name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(index=index, name=name, compute_capability=f"{props.major}.{props.minor}",
                      total_memory_mb=int(props.totalGlobalMem) >> 20, driver_version=version_text(driver),
                      runtime_version=version_text(int(cuda_call(rt.cudaRuntimeGetVersion()))))


def set_device(index: int) -> None:
    cuda_call(cudart().cudaSetDevice(index))
