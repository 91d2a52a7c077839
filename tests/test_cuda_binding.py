"""runtime/cuda.py's two bindings: cuda-python preferred, PyCUDA chosen when cuda-python is absent.

Both run here on stand-ins in host memory (tests/fakecuda.py): the same buffers, copies, streams,
events and the same DevicePipeline; CUDA graphs only where the binding offers them.
"""

import numpy as np
import pytest

import anonymixer.runtime.cuda as cuda_module
from anonymixer.errors import CudaError
from anonymixer.runtime.cuda import (CudaGraph, DeviceBuffer, Event, PinnedBuffer, Stream, binding, copy_async,
                                     device_info)
from anonymixer.runtime.doctor import cuda_pair_warnings
from fakecuda import FakeCudart, FakePyCudaDriver


def importer(monkeypatch, pycuda_driver):
    """``runtime.cuda`` sees no cuda-python, and ``pycuda_driver`` (or no PyCUDA when None)."""
    real = cuda_module.importlib.import_module

    def import_module(name):
        if name.startswith("cuda"):
            raise ImportError(f"No module named {name!r}")
        if name.startswith("pycuda"):
            if pycuda_driver is None:
                raise ImportError(f"No module named {name!r}")
            return pycuda_driver
        return real(name)

    monkeypatch.setattr(cuda_module.importlib, "import_module", import_module)
    monkeypatch.setattr(cuda_module, "_runtime", None)
    monkeypatch.setattr(cuda_module, "_pycuda", None)
    monkeypatch.setattr(cuda_module, "_bound", None)


@pytest.fixture
def pycuda(monkeypatch):
    driver = FakePyCudaDriver()
    monkeypatch.setattr(cuda_module, "_runtime", None)
    monkeypatch.setattr(cuda_module, "_pycuda", driver)
    monkeypatch.setattr(cuda_module, "_bound", None)
    return driver


def test_pycuda_is_chosen_when_cuda_python_is_absent_and_pycuda_present(monkeypatch):
    driver = FakePyCudaDriver()
    importer(monkeypatch, driver)
    chosen = binding()
    assert chosen.name.startswith("PyCUDA") and not chosen.has_graphs and driver.initialised


def test_without_either_binding_the_error_names_both_and_the_pip_line(monkeypatch):
    importer(monkeypatch, None)
    with pytest.raises(CudaError, match="neither cuda-python nor PyCUDA.*pip install"):
        binding()


def test_cuda_python_is_preferred_when_both_are_present(monkeypatch):
    monkeypatch.setattr(cuda_module, "_runtime", FakeCudart())
    monkeypatch.setattr(cuda_module, "_pycuda", FakePyCudaDriver())
    monkeypatch.setattr(cuda_module, "_bound", None)
    assert binding().name.startswith("cuda-python") and binding().has_graphs


def test_pycuda_round_trip_through_pinned_and_device_buffers_on_a_stream(pycuda):
    data = np.arange(1000, dtype=np.float32)
    host_in, host_out = PinnedBuffer(data.nbytes), PinnedBuffer(data.nbytes)
    dev_a, dev_b = DeviceBuffer(data.nbytes), DeviceBuffer(data.nbytes)
    stream, start, end = Stream(), Event(), Event(timing=False)
    host_in.view(data.shape)[...] = data
    start.record(stream)
    copy_async(dev_a, host_in, data.nbytes, stream)
    copy_async(dev_b, dev_a, data.nbytes, stream)
    copy_async(host_out, dev_b, data.nbytes, stream)
    end.record(stream)
    stream.synchronize()
    assert np.array_equal(host_out.view(data.shape), data)
    assert [entry[0] for entry in pycuda.log if entry[0] in ("htod", "dtod", "dtoh")] == ["htod", "dtod", "dtoh"]
    assert {entry[2] for entry in pycuda.log if entry[0] in ("htod", "dtod", "dtoh")} == {stream.handle}
    assert end.event.flags == FakePyCudaDriver.event_flags.DISABLE_TIMING and start.event.flags == 0
    assert pycuda.contexts == [0]          # the primary context of device 0, pushed once
    host_out.view(data.shape)[...] = 0
    copy_async(host_out, host_in, data.nbytes, stream)    # host to host: after the stream's work
    assert np.array_equal(host_out.view(data.shape), data) and pycuda.log[-1] == ("sync", stream.handle)
    for buffer in (host_in, host_out, dev_a, dev_b):
        buffer.free()
    assert pycuda.blocks == {}


def test_pycuda_streams_are_non_blocking_and_wait_on_events(pycuda):
    a, b, event = Stream(), Stream(), Event()
    event.record(a)
    b.wait(event)
    assert a.stream.flags == 1 and a.handle != b.handle
    assert ("wait", b.handle, event.event) in pycuda.log


def test_cuda_graphs_are_refused_in_one_line_where_the_binding_has_none(pycuda):
    with pytest.raises(CudaError, match="CUDA graphs need cuda-python") as error:
        CudaGraph(Stream(), lambda s: None)
    assert "\n" not in str(error.value)


def test_pycuda_device_info_and_its_errors_become_cuda_errors(pycuda):
    info = device_info(0)
    assert (info.name, info.compute_capability, info.driver_version, info.runtime_version) == (
        "Fake Orin", "8.7", "12.6", "12.6")
    with pytest.raises(CudaError, match="asked for, but this machine has 1"):
        device_info(3)
    with pytest.raises(CudaError, match="PyCUDA call .*invalid device ordinal"):
        binding().set_device(2)


@pytest.mark.parametrize("inflight", [1, 3])
def test_the_device_pipeline_gives_the_same_frames_in_order_on_pycuda(pycuda, inflight):
    from anonymixer.runtime.stream import DevicePipeline
    from test_stream import SHAPES, device_array, run_pipeline, toy_reference, toy_steps

    w_key = np.full((1, 2, 3), 0.5, np.float32)
    key_buffer = DeviceBuffer(w_key.nbytes)
    device_array(key_buffer, (1, 2, 3))[...] = w_key
    rng = np.random.default_rng(0)
    frames = [rng.normal(size=(b, 3, 4, 4)).astype(np.float32) for b in (1, 2, 4, 3, 1)]
    pipeline = DevicePipeline(SHAPES, toy_steps(), inflight=inflight, max_batch=4, shared={"w_key": key_buffer},
                              shared_ready=Event())
    for got, frame in zip(run_pipeline(pipeline, frames, inflight), frames, strict=True):
        np.testing.assert_allclose(got, toy_reference(frame, w_key), rtol=1e-6)
    assert len({entry[2] for entry in pycuda.log if entry[0] == "htod"}) == inflight


@pytest.mark.parametrize("cuda_python, driver, trt, expected", [
    ("13.0.1", "12.6", None, "needs a driver for CUDA 13"),       # JetPack 6.2 with cuda-python 13
    ("12.9.4", "12.6", 13, "TensorRT here is built for CUDA 13"),
    ("12.6.2", "12.6", 12, None),
    ("12.9.4", "13.0", 12, None),                                  # an older runtime on a newer driver is fine
    (None, "12.6", 12, None),
])
def test_doctor_warns_on_a_mismatched_cuda_python_driver_or_tensorrt_pair(cuda_python, driver, trt, expected):
    warnings = cuda_pair_warnings(cuda_python, driver, trt)
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and expected in warnings[0] and "pip install 'cuda-python" in warnings[0]
