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
