"""CUDA for the TensorRT backend, kept thin: the pattern of NVIDIA's ``samples/python/common_runtime.py``,
with asynchronous copies and one stream per frame in flight, through one of two Python bindings:

- **cuda-python** (``cuda.bindings.runtime``; preferred): NVIDIA's own binding, the one TensorRT's
  samples use, binary wheels for x86 and Jetson, the CUDA runtime API TensorRT itself uses, and
  CUDA graphs. ``cuda_call(rt.cudaX(...))`` checks every return code.
- **PyCUDA** (``pycuda.driver``; fallback, chosen automatically when cuda-python is absent and
  PyCUDA is present, as on many Jetson images): the driver API on the device's primary context
  (the one TensorRT's runtime API uses). Pinned buffers, streams, events and copies; no CUDA
  graphs through it here (``CudaGraph`` refuses in one line).

Either way the interface is the same: ``PinnedBuffer`` (page-locked host memory, so copies are
truly asynchronous) and ``DeviceBuffer``; ``copy_async`` between them on a ``Stream``; ``Event``
(ordering between streams, timing); ``CudaGraph`` (capture and replay); ``device_info`` for
sidecars and ``anonymixer doctor``; ``binding()`` says which binding runs.

Neither binding is imported at module import: CPU-only code can import this file.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CudaError

INSTALL = ("pip install 'anonymixer[trt]' (cuda-python; or PyCUDA, as Jetson images often have), "
           "with an NVIDIA driver")
_HINTS = {
    "cudaErrorInsufficientDriver": "no NVIDIA driver, or one too old for this cuda-python; run `anonymixer doctor`",
    "cudaErrorNoDevice": "no CUDA device on this machine; run `anonymixer doctor`",
    "CUDA_ERROR_NO_DEVICE": "no CUDA device on this machine; run `anonymixer doctor`",
    "cudaErrorMemoryAllocation": "out of GPU memory: lower --batch or --inflight",
    "CUDA_ERROR_OUT_OF_MEMORY": "out of GPU memory: lower --batch or --inflight",
}
_runtime: Any = None     # cuda-python's runtime module once loaded (tests put a stand-in here)
_pycuda: Any = None      # pycuda.driver once loaded, when cuda-python is absent (tests put a stand-in here)
_bound: tuple[Any, Any] | None = None   # (module, its Binding)


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


def binding() -> "CudaPython | PyCuda":
    """The binding in use: cuda-python when importable, else PyCUDA; ``CudaError`` when neither is."""
    global _bound, _pycuda
    if _runtime is None and _pycuda is None:
        try:
            cudart()
        except CudaError:
            try:
                _pycuda = importlib.import_module("pycuda.driver")
            except ImportError:
                raise CudaError(f"neither cuda-python nor PyCUDA is installed: {INSTALL}") from None
    module = _runtime if _runtime is not None else _pycuda
    if _bound is None or _bound[0] is not module:
        _bound = (module, CudaPython(module) if module is _runtime else PyCuda(module))
    return _bound[1]


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


def native_handle(obj: Any) -> int:
    """The address a cuda-python object wraps (a stream for ``execute_async_v3``).

    ``int(obj)`` is deprecated since cuda-python 12.9/13 in favour of
    ``cuda.bindings.utils.get_cuda_native_handle``; older releases only have ``int``.
    """
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    try:
        return int(get_cuda_native_handle(obj))
    except TypeError:    # a plain int (test stand-ins, cuda.cudart before 12.6)
        return int(obj)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class CudaPython:
    """cuda-python's runtime API, every call checked with ``cuda_call``."""

    has_graphs = True

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        version = _version("cuda-python") or _version("cuda-bindings")
        self.name = f"cuda-python {version}" if version else "cuda-python"

    def malloc(self, nbytes: int) -> tuple[int, Any]:
        return int(cuda_call(self.rt.cudaMalloc(nbytes))), None

    def free(self, ptr: int, owner: Any) -> None:
        cuda_call(self.rt.cudaFree(ptr))

    def host_alloc(self, nbytes: int) -> tuple[int, np.ndarray, Any]:
        ptr = int(cuda_call(self.rt.cudaMallocHost(nbytes)))
        array = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
        return ptr, array, None

    def host_free(self, ptr: int, owner: Any) -> None:
        cuda_call(self.rt.cudaFreeHost(ptr))

    def copy(self, dst: "PinnedBuffer | DeviceBuffer", src: "PinnedBuffer | DeviceBuffer", nbytes: int,
             stream: Any) -> None:
        kinds = self.rt.cudaMemcpyKind
        kind = {(True, False): kinds.cudaMemcpyHostToDevice, (False, True): kinds.cudaMemcpyDeviceToHost,
                (False, False): kinds.cudaMemcpyDeviceToDevice, (True, True): kinds.cudaMemcpyHostToHost}[
            (isinstance(src, PinnedBuffer), isinstance(dst, PinnedBuffer))]
        cuda_call(self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream))

    def stream_create(self) -> tuple[Any, int]:
        stream = cuda_call(self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))
        return stream, native_handle(stream)

    def stream_wait(self, stream: Any, event: Any) -> None:
        cuda_call(self.rt.cudaStreamWaitEvent(stream, event, 0))

    def stream_synchronize(self, stream: Any) -> None:
        cuda_call(self.rt.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream: Any) -> None:
        cuda_call(self.rt.cudaStreamDestroy(stream))

    def event_create(self, timing: bool) -> Any:
        flags = self.rt.cudaEventDefault if timing else self.rt.cudaEventDisableTiming
        return cuda_call(self.rt.cudaEventCreateWithFlags(flags))

    def event_record(self, event: Any, stream: Any) -> None:
        cuda_call(self.rt.cudaEventRecord(event, stream))

    def event_synchronize(self, event: Any) -> None:
        cuda_call(self.rt.cudaEventSynchronize(event))

    def event_done(self, event: Any) -> bool:
        err = self.rt.cudaEventQuery(event)[0]
        if err.name == "cudaErrorNotReady":
            return False
        cuda_call((err,))
        return True

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(cuda_call(self.rt.cudaEventElapsedTime(start, end)))

    def event_destroy(self, event: Any) -> None:
        cuda_call(self.rt.cudaEventDestroy(event))

    def graph_capture(self, stream: Any, enqueue: Callable[[], None]) -> tuple[Any, Any]:
        rt = self.rt
        cuda_call(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            enqueue()
        except BaseException:
            rt.cudaStreamEndCapture(stream)   # abandon the capture; the original error is the one to see
            raise
        graph = cuda_call(rt.cudaStreamEndCapture(stream))
        return graph, cuda_call(rt.cudaGraphInstantiate(graph, 0))

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        cuda_call(self.rt.cudaGraphLaunch(graph_exec, stream))

    def graph_destroy(self, graph: Any, graph_exec: Any) -> None:
        cuda_call(self.rt.cudaGraphExecDestroy(graph_exec))
        cuda_call(self.rt.cudaGraphDestroy(graph))

    def driver_version(self) -> int:
        """The CUDA version the driver supports (``12060``), 0 without a driver."""
        err, version = self.rt.cudaDriverGetVersion()
        return int(version or 0) if int(err) == 0 else 0

    def runtime_version(self) -> int:
        return int(cuda_call(self.rt.cudaRuntimeGetVersion()))

    def device_count(self) -> int:
        return int(cuda_call(self.rt.cudaGetDeviceCount()))

    def device_properties(self, index: int) -> tuple[str, int, int, int]:
        """``(name, major, minor, total bytes)`` of device ``index``."""
        props = cuda_call(self.rt.cudaGetDeviceProperties(index))
        raw = props.name
        name = raw.split(b"\0", 1)[0].decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return name, int(props.major), int(props.minor), int(props.totalGlobalMem)

    def set_device(self, index: int) -> None:
        cuda_call(self.rt.cudaSetDevice(index))


class PyCuda:
    """PyCUDA's driver API on the device's primary context; its exceptions become ``CudaError``."""

    has_graphs = False    # PyCUDA's graph API is not driven here: CudaGraph refuses, frames run without

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        version = _version("pycuda")
        self.name = f"PyCUDA {version}" if version else "PyCUDA"
        self.context: Any = None
        self._call(driver.init)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except CudaError:
            raise
        except Exception as exc:   # pycuda.driver.Error and its subclasses (LogicError, MemoryError, ...)
            name = type(exc).__name__
            hint = ("out of GPU memory: lower --batch or --inflight" if "memory" in str(exc).lower()
                    else "`anonymixer doctor` checks the setup")
            raise CudaError(f"PyCUDA call {getattr(fn, '__name__', 'call')} failed ({name}: {exc}): {hint}") from None

    def _ensure_context(self) -> None:
        if self.context is None:
            self.set_device(0)

    def malloc(self, nbytes: int) -> tuple[int, Any]:
        self._ensure_context()
        allocation = self._call(self.driver.mem_alloc, nbytes)
        return int(allocation), allocation

    def free(self, ptr: int, owner: Any) -> None:
        self._call(owner.free)

    def host_alloc(self, nbytes: int) -> tuple[int, np.ndarray, Any]:
        self._ensure_context()
        array = self._call(self.driver.pagelocked_empty, (nbytes,), np.uint8)
        return int(array.ctypes.data), array, array.base

    def host_free(self, ptr: int, owner: Any) -> None:
        self._call(owner.free)

    def copy(self, dst: "PinnedBuffer | DeviceBuffer", src: "PinnedBuffer | DeviceBuffer", nbytes: int,
             stream: Any) -> None:
        d = self.driver
        if isinstance(src, PinnedBuffer) and isinstance(dst, DeviceBuffer):
            self._call(d.memcpy_htod_async, dst.ptr, src.bytes[:nbytes], stream)
        elif isinstance(src, DeviceBuffer) and isinstance(dst, PinnedBuffer):
            self._call(d.memcpy_dtoh_async, dst.bytes[:nbytes], src.ptr, stream)
        elif isinstance(src, PinnedBuffer) and isinstance(dst, PinnedBuffer):
            self.stream_synchronize(stream)   # host to host, ordered after the stream's work like cudaMemcpyAsync
            dst.bytes[:nbytes] = src.bytes[:nbytes]
        else:
            self._call(d.memcpy_dtod_async, dst.ptr, src.ptr, nbytes, stream)

    def stream_create(self) -> tuple[Any, int]:
        self._ensure_context()
        stream = self._call(self.driver.Stream, 1)     # CU_STREAM_NON_BLOCKING
        return stream, int(stream.handle)

    def stream_wait(self, stream: Any, event: Any) -> None:
        self._call(stream.wait_for_event, event)

    def stream_synchronize(self, stream: Any) -> None:
        self._call(stream.synchronize)

    def stream_destroy(self, stream: Any) -> None:
        """PyCUDA destroys a stream when its object goes; the caller drops its reference."""

    def event_create(self, timing: bool) -> Any:
        self._ensure_context()
        return self._call(self.driver.Event, 0 if timing else self.driver.event_flags.DISABLE_TIMING)

    def event_record(self, event: Any, stream: Any) -> None:
        self._call(event.record, stream)

    def event_synchronize(self, event: Any) -> None:
        self._call(event.synchronize)

    def event_done(self, event: Any) -> bool:
        return bool(self._call(event.query))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call(end.time_since, start))

    def event_destroy(self, event: Any) -> None:
        """PyCUDA destroys an event when its object goes."""

    def graph_capture(self, stream: Any, enqueue: Callable[[], None]) -> tuple[Any, Any]:
        raise CudaError("CUDA graphs need cuda-python (pip install 'anonymixer[trt-cu12]' or [jetson]); "
                        "with PyCUDA, run without cuda_graphs")

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        raise CudaError("CUDA graphs need cuda-python")

    def graph_destroy(self, graph: Any, graph_exec: Any) -> None:
        """Nothing was captured."""

    def driver_version(self) -> int:
        """The CUDA version the driver supports (``12060``), 0 without a driver."""
        try:
            return int(self.driver.get_driver_version())
        except Exception:
            return 0

    def runtime_version(self) -> int:
        """The CUDA version PyCUDA was built against (it has no runtime of its own)."""
        major, minor, *_ = self._call(self.driver.get_version)
        return int(major) * 1000 + int(minor) * 10

    def device_count(self) -> int:
        return int(self._call(self.driver.Device.count))

    def device_properties(self, index: int) -> tuple[str, int, int, int]:
        device = self._call(self.driver.Device, index)
        major, minor = self._call(device.compute_capability)
        return str(self._call(device.name)), int(major), int(minor), int(self._call(device.total_memory))

    def set_device(self, index: int) -> None:
        """Make device ``index``'s primary context (TensorRT's) current on this thread."""
        if self.context is not None:
            self._call(self.context.pop)
        self.context = self._call(self._call(self.driver.Device, index).retain_primary_context)
        self._call(self.context.push)


class DeviceBuffer:
    """``nbytes`` of device memory; ``ptr`` is the address TensorRT binds."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr, self._owner = binding().malloc(max(self.nbytes, 1))

    def free(self) -> None:
        if self.ptr:
            binding().free(self.ptr, self._owner)
            self.ptr, self._owner = 0, None


class PinnedBuffer:
    """``nbytes`` of page-locked host memory, seen as a NumPy byte array."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr, self.bytes, self._owner = binding().host_alloc(max(self.nbytes, 1))

    def view(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """The first ``prod(shape)`` items as an array of ``shape`` (no copy: it aliases pinned memory)."""
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if count > self.nbytes:
            raise CudaError(f"pinned buffer of {self.nbytes} bytes cannot hold {shape} {np.dtype(dtype)}")
        return self.bytes[:count].view(dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            binding().host_free(self.ptr, self._owner)
            self.ptr, self._owner = 0, None


class Stream:
    """A non-blocking CUDA stream; ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        self.stream, self.handle = binding().stream_create()

    def wait(self, event: "Event") -> None:
        """Work queued on this stream after this call starts only once ``event`` has happened."""
        binding().stream_wait(self.stream, event.event)

    def synchronize(self) -> None:
        binding().stream_synchronize(self.stream)

    def destroy(self) -> None:
        if self.stream is not None:
            binding().stream_destroy(self.stream)
            self.stream = None


class Event:
    """A CUDA event: a point in a stream that other streams (or the host) can wait for."""

    def __init__(self, timing: bool = True) -> None:
        self.event = binding().event_create(timing)

    def record(self, stream: Stream) -> None:
        binding().event_record(self.event, stream.stream)

    def synchronize(self) -> None:
        binding().event_synchronize(self.event)

    def done(self) -> bool:
        """Whether all work before the event has finished (does not block)."""
        return binding().event_done(self.event)

    def elapsed_ms(self, since: "Event") -> float:
        """Milliseconds from ``since`` to this event (both recorded, both with timing)."""
        return binding().event_elapsed_ms(since.event, self.event)

    def destroy(self) -> None:
        if self.event is not None:
            binding().event_destroy(self.event)
            self.event = None


def copy_async(dst: PinnedBuffer | DeviceBuffer, src: PinnedBuffer | DeviceBuffer, nbytes: int,
               stream: Stream) -> None:
    """Queue a copy of ``nbytes`` from ``src`` to ``dst`` on ``stream`` (host<->device or device->device)."""
    if nbytes > min(dst.nbytes, src.nbytes):
        raise CudaError(f"copy of {nbytes} bytes does not fit buffers of {src.nbytes} -> {dst.nbytes} bytes")
    binding().copy(dst, src, nbytes, stream.stream)


class CudaGraph:
    """Work queued by ``enqueue(stream)``, captured once and replayed with one launch.

    Valid only while the captured shapes and buffer addresses stay the same (TensorRT: run once
    without capture first, so that the execution context has settled its shapes). Needs a binding
    that offers graphs (``binding().has_graphs``: cuda-python); otherwise a one-line ``CudaError``.
    """

    def __init__(self, stream: Stream, enqueue: Callable[[Stream], None]) -> None:
        self.graph, self.exec = binding().graph_capture(stream.stream, lambda: enqueue(stream))

    def launch(self, stream: Stream) -> None:
        binding().graph_launch(self.exec, stream.stream)

    def destroy(self) -> None:
        if self.exec is not None or self.graph is not None:
            binding().graph_destroy(self.graph, self.exec)
            self.graph = self.exec = None


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to, and what ``anonymixer doctor`` reports."""

    index: int
    name: str
    compute_capability: str        # "8.7" (Orin), "9.0" (H100)
    total_memory_mb: int
    driver_version: str            # "12.4" from cudaDriverGetVersion
    runtime_version: str           # "12.9" of the CUDA runtime cuda-python links (PyCUDA: built against)


def version_text(code: int) -> str:
    """CUDA's integer versions as text: ``12040 -> "12.4"``."""
    return f"{code // 1000}.{(code % 1000) // 10}"


def device_info(index: int = 0) -> DeviceInfo:
    """The CUDA device ``index``; ``CudaError`` (with advice) when there is no driver or device."""
    cuda = binding()
    driver = cuda.driver_version()
    if driver == 0:
        raise CudaError("no NVIDIA driver on this machine (the driver version is 0); run `anonymixer doctor`")
    count = cuda.device_count()
    if index >= count:
        raise CudaError(f"CUDA device {index} asked for, but this machine has {count}")
    name, major, minor, total = cuda.device_properties(index)
    return DeviceInfo(index=index, name=name, compute_capability=f"{major}.{minor}", total_memory_mb=total >> 20,
                      driver_version=version_text(driver), runtime_version=version_text(cuda.runtime_version()))


def set_device(index: int) -> None:
    binding().set_device(index)
