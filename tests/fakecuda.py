"""A stand-in for cuda-python's runtime module, in host memory, for testing the stream plumbing on CPUs.

"Device" memory is host memory, copies happen at once, streams and events only record what was asked.
It checks what cuda-python would: every pointer freed was allocated, copies stay inside allocations.
"""

import ctypes
import itertools


class Code(int):
    """A cudaError_t: an int with a name."""

    def __new__(cls, value, name):
        code = super().__new__(cls, value)
        code.name = name
        return code


OK = Code(0, "cudaSuccess")


class FakeCudart:
    cudaStreamNonBlocking = 1
    cudaEventDefault = 0
    cudaEventDisableTiming = 2

    class cudaMemcpyKind:
        cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice = range(4)

    class cudaStreamCaptureMode:
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self, fail=None):
        self.blocks = {}
        self.log = []
        self.fail = fail or {}           # function name -> Code to return instead of success
        self.ids = itertools.count(1)

    def _result(self, name, *values):
        if name in self.fail:
            return (self.fail[name], *([None] * len(values)))
        return (OK, *values)

    def _alloc(self, name, nbytes):
        buffer = ctypes.create_string_buffer(nbytes)
        self.blocks[ctypes.addressof(buffer)] = buffer
        return self._result(name, ctypes.addressof(buffer))

    def cudaMalloc(self, nbytes):
        return self._alloc("cudaMalloc", nbytes)

    def cudaMallocHost(self, nbytes):
        return self._alloc("cudaMallocHost", nbytes)

    def cudaFree(self, ptr):
        del self.blocks[ptr]
        return (OK,)

    cudaFreeHost = cudaFree

    def _inside(self, ptr, nbytes):
        return any(start <= ptr and ptr + nbytes <= start + len(buf) for start, buf in self.blocks.items())

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        assert self._inside(dst, nbytes) and self._inside(src, nbytes), "copy outside an allocation"
        ctypes.memmove(dst, src, nbytes)
        self.log.append(("copy", kind, nbytes, int(stream)))
        return (OK,)

    def cudaStreamCreateWithFlags(self, flags):
        return self._result("cudaStreamCreateWithFlags", next(self.ids))

    def cudaStreamSynchronize(self, stream):
        return (OK,)

    def cudaStreamDestroy(self, stream):
        return (OK,)

    def cudaStreamWaitEvent(self, stream, event, flags):
        self.log.append(("wait", int(stream), event))
        return (OK,)

    def cudaEventCreateWithFlags(self, flags):
        return (OK, next(self.ids))

    def cudaEventRecord(self, event, stream):
        self.log.append(("record", event, int(stream)))
        return (OK,)

    def cudaEventSynchronize(self, event):
        return (OK,)

    def cudaEventElapsedTime(self, start, end):
        return (OK, 0.25)

    def cudaEventDestroy(self, event):
        return (OK,)


class CapturingCudart(FakeCudart):
    """Also records stream capture: work enqueued while capturing is kept in the graph, run at launch."""

    def __init__(self, fail=None):
        super().__init__(fail)
        self.capturing = None
        self.launches = 0

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing = []
        return (OK,)

    def cudaStreamEndCapture(self, stream):
        graph, self.capturing = self.capturing, None
        return (OK, graph)

    def cudaGraphInstantiate(self, graph, flags):
        return (OK, list(graph))

    def cudaGraphLaunch(self, graph_exec, stream):
        self.launches += 1
        for work in graph_exec:
            work()
        return (OK,)

    def cudaGraphExecDestroy(self, graph_exec):
        return (OK,)

    cudaGraphDestroy = cudaGraphExecDestroy

    def enqueue(self, work):
        """Run ``work`` now, or keep it in the graph being captured."""
        if self.capturing is not None:
            self.capturing.append(work)
        else:
            work()


class FakePyCudaDriver:
    """A stand-in for ``pycuda.driver`` in host memory: the calls the PyCUDA binding makes, checked.

    ``mem_alloc`` returns an allocation whose ``int()`` is its address; ``pagelocked_empty`` a NumPy
    array whose ``.base`` can be freed; async copies happen at once and are logged with the stream.
    """

    class event_flags:
        DISABLE_TIMING = 2

    class Error(Exception):
        pass

    def __init__(self):
        import numpy as np

        self.np = np
        self.blocks = {}
        self.log = []
        self.contexts = []
        self.initialised = False
        driver = self

        class Allocation:
            def __init__(self, nbytes):
                self.buffer = ctypes.create_string_buffer(nbytes)
                driver.blocks[ctypes.addressof(self.buffer)] = self.buffer

            def __int__(self):
                return ctypes.addressof(self.buffer)

            def free(self):
                del driver.blocks[int(self)]

        class HostAllocation(bytearray):
            """Page-locked memory: the ``.base`` of the array ``pagelocked_empty`` returns."""

            def free(self):
                del driver.blocks[np.ndarray((1,), np.uint8, buffer=self).ctypes.data]

        class Stream:
            handles = itertools.count(100)

            def __init__(self, flags=0):
                self.flags, self.handle = flags, next(Stream.handles)

            def synchronize(self):
                driver.log.append(("sync", self.handle))

            def wait_for_event(self, event):
                driver.log.append(("wait", self.handle, event))

        class Event:
            def __init__(self, flags=0):
                self.flags = flags

            def record(self, stream):
                driver.log.append(("record", self, stream.handle))

            def synchronize(self):
                pass

            def query(self):
                return True

            def time_since(self, start):
                return 0.5

        class Context:
            def __init__(self, index):
                self.index = index

            def push(self):
                driver.contexts.append(self.index)

            def pop(self):
                driver.contexts.pop()

        class Device:
            def __init__(self, index):
                if index >= 1:
                    raise FakePyCudaDriver.Error(f"invalid device ordinal {index}")
                self.index = index

            @staticmethod
            def count():
                return 1

            def name(self):
                return "Fake Orin"

            def compute_capability(self):
                return (8, 7)

            def total_memory(self):
                return 8 << 30

            def retain_primary_context(self):
                return Context(self.index)

        self.Allocation, self.HostAllocation = Allocation, HostAllocation
        self.Stream, self.Event, self.Device = Stream, Event, Device

    def init(self):
        self.initialised = True

    def get_driver_version(self):
        return 12060

    def get_version(self):
        return (12, 6, 0)

    def mem_alloc(self, nbytes):
        assert self.contexts, "PyCUDA needs a current context before allocating"
        return self.Allocation(nbytes)

    def pagelocked_empty(self, shape, dtype):
        assert self.contexts, "PyCUDA needs a current context before allocating"
        allocation = self.HostAllocation(int(shape[0]) * self.np.dtype(dtype).itemsize)
        array = self.np.ndarray(shape, dtype, buffer=allocation)
        self.blocks[array.ctypes.data] = array
        return array

    def _inside(self, ptr, nbytes):
        return any(start <= ptr and ptr + nbytes <= start + len(buf) for start, buf in self.blocks.items())

    def memcpy_htod_async(self, dest, src, stream):
        assert self._inside(dest, src.nbytes), "copy outside an allocation"
        ctypes.memmove(dest, src.ctypes.data, src.nbytes)
        self.log.append(("htod", src.nbytes, stream.handle))

    def memcpy_dtoh_async(self, dest, src, stream):
        assert self._inside(src, dest.nbytes), "copy outside an allocation"
        ctypes.memmove(dest.ctypes.data, src, dest.nbytes)
        self.log.append(("dtoh", dest.nbytes, stream.handle))

    def memcpy_dtod_async(self, dest, src, size, stream):
        assert self._inside(dest, size) and self._inside(src, size), "copy outside an allocation"
        ctypes.memmove(dest, src, size)
        self.log.append(("dtod", size, stream.handle))
