"""Frames in flight: results in input order, stages overlapping, errors with their frame; CPU only."""

import ctypes
import threading
import time

import numpy as np
import pytest

from anonymixer.errors import AnonymixerError, BackendError, CudaError
from anonymixer.runtime import Protector
from anonymixer.runtime import cuda as cuda_module
from anonymixer.runtime.protector import faces_to_input
from anonymixer.runtime.stream import DevicePipeline, ThreadPipeline, in_input_order
from fakecuda import Code, FakeCudart


@pytest.fixture(scope="module")
def protector(tiny_bundle):
    from anonymixer.keys import Key
    from conftest import TEST_SECRET

    return Protector(tiny_bundle, Key(TEST_SECRET))


def batches(count, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(batch, 256, 256, 3), dtype=np.uint8) for _ in range(count)]


def run_pipeline(pipeline, frames, inflight):
    return list(in_input_order(pipeline, frames, inflight))


def test_thread_pipeline_returns_results_in_input_order_despite_uneven_stage_times():
    delays = [0.03, 0.0, 0.02, 0.0, 0.01, 0.0]

    def slow_first(x):
        time.sleep(delays[int(x[0])])
        return x * 2

    pipeline = ThreadPipeline([slow_first, lambda x: x + 1], inflight=3)
    out = run_pipeline(pipeline, [np.array([i], dtype=np.float32) for i in range(6)], inflight=3)
    assert [float(o[0]) for o in out] == [2 * i + 1 for i in range(6)]


def test_thread_pipeline_overlaps_stages_of_neighbouring_frames():
    active, overlap = set(), []
    lock = threading.Lock()

    def stage(name):
        def run(x):
            with lock:
                active.add(name)
                overlap.append(len(active))
            time.sleep(0.02)
            with lock:
                active.discard(name)
            return x
        return run

    run_pipeline(ThreadPipeline([stage("a"), stage("b"), stage("c")], inflight=3), [np.zeros(1)] * 6, inflight=3)
    assert max(overlap) >= 2


def test_one_frame_in_flight_runs_frames_one_after_the_other():
    active, seen = [0], []

    def stage(x):
        active[0] += 1
        seen.append(active[0])
        time.sleep(0.005)
        active[0] -= 1
        return x

    run_pipeline(ThreadPipeline([stage, stage], inflight=1), [np.zeros(1)] * 4, inflight=1)
    assert max(seen) == 1


def test_a_failing_frame_raises_at_its_result_and_later_frames_still_come_out():
    def stage(x):
        if x[0] == 1:
            raise BackendError("frame 1 is bad")
        return x

    pipeline = ThreadPipeline([stage], inflight=3)
    for i in range(3):
        pipeline.submit(np.array([i]))
    assert pipeline.result()[0] == 0
    with pytest.raises(BackendError, match="frame 1"):
        pipeline.result()
    assert pipeline.result()[0] == 2
    pipeline.close()


def test_submitting_beyond_inflight_is_refused():
    pipeline = ThreadPipeline([lambda x: x], inflight=1)
    pipeline.submit(np.zeros(1))
    with pytest.raises(BackendError, match="in flight"):
        pipeline.submit(np.zeros(1))
    pipeline.result()
    pipeline.close()


@pytest.mark.parametrize("inflight", [1, 3])
def test_protect_many_on_torch_equals_protect_per_batch_in_order(protector, inflight):
    frames = batches(4, batch=2)
    expected = [protector.protect(f) for f in frames]
    got = list(protector.protect_many(frames, inflight=inflight))
    assert len(got) == 4
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    assert set(protector.last_timings_ms) == {"encoder", "mixer", "generator"}


def test_protect_many_reads_its_input_lazily(protector):
    read = []

    def source():
        for i, frame in enumerate(batches(5)):
            read.append(i)
            yield frame

    stream = protector.protect_many(source(), inflight=2)
    next(stream)
    assert read == [0, 1]
    stream.close()


def test_protect_many_refuses_bad_batches_with_the_usual_error(protector):
    with pytest.raises(AnonymixerError, match="256, 256, 3"):
        list(protector.protect_many([np.zeros((1, 64, 64, 3), np.uint8)]))


# --- the cuda-python pipeline, on a host-memory stand-in for cuda.bindings.runtime -------------------

@pytest.fixture
def fake_cudart(monkeypatch):
    fake = FakeCudart()
    monkeypatch.setattr(cuda_module, "_runtime", fake)
    return fake


def device_array(buffer, shape):
    pointer = ctypes.cast(buffer.ptr, ctypes.POINTER(ctypes.c_float))
    return np.ctypeslib.as_array(pointer, (int(np.prod(shape)),))[:int(np.prod(shape))].reshape(shape)


SHAPES = {"face": (3, 4, 4), "w_real": (2, 3), "w_prot": (2, 3), "image": (3, 2, 2)}


def toy_steps():
    """encoder: per-sample sums; mixer: + w_key; generator: broadcast mean. Device buffers in, device out."""
    def encoder(slot, buffers, stream, batch):
        face = device_array(buffers["face"], (batch, *SHAPES["face"]))
        device_array(buffers["w_real"], (batch, 2, 3))[...] = face.sum(axis=(1, 2, 3))[:, None, None] + np.arange(6).reshape(2, 3)

    def mixer(slot, buffers, stream, batch):
        w_key = device_array(buffers["w_key"], (1, 2, 3))
        w_real = device_array(buffers["w_real"], (batch, 2, 3))
        device_array(buffers["w_prot"], (batch, 2, 3))[...] = w_real + w_key

    def generator(slot, buffers, stream, batch):
        w_prot = device_array(buffers["w_prot"], (batch, 2, 3))
        device_array(buffers["image"], (batch, 3, 2, 2))[...] = w_prot.mean(axis=(1, 2))[:, None, None, None]

    return [("encoder", encoder), ("mixer", mixer), ("generator", generator)]


def toy_reference(face, w_key):
    w_real = face.sum(axis=(1, 2, 3))[:, None, None] + np.arange(6).reshape(2, 3)
    return np.broadcast_to((w_real + w_key).mean(axis=(1, 2))[:, None, None, None], (face.shape[0], 3, 2, 2))


@pytest.mark.parametrize("inflight", [1, 3])
def test_device_pipeline_gives_each_frame_its_own_result_in_order(fake_cudart, inflight):
    w_key = np.full((1, 2, 3), 0.5, np.float32)
    key_buffer = cuda_module.DeviceBuffer(w_key.nbytes)
    device_array(key_buffer, (1, 2, 3))[...] = w_key
    rng = np.random.default_rng(0)
    frames = [rng.normal(size=(b, 3, 4, 4)).astype(np.float32) for b in (1, 2, 4, 3, 1, 2, 4)]
    pipeline = DevicePipeline(SHAPES, toy_steps(), inflight=inflight, max_batch=4, shared={"w_key": key_buffer},
                              shared_ready=cuda_module.Event())
    out = run_pipeline(pipeline, frames, inflight)
    for got, frame in zip(out, frames, strict=True):
        np.testing.assert_allclose(got, toy_reference(frame, w_key), rtol=1e-6)
    assert set(pipeline.last_timings_ms) == {"copy_in", "encoder", "mixer", "generator", "copy_out"}
    streams = {entry[3] for entry in fake_cudart.log if entry[0] == "copy"}
    assert len(streams) == inflight                      # one stream per frame in flight
    assert list(fake_cudart.blocks) == [key_buffer.ptr]   # close() freed all but the shared buffer


def test_device_pipeline_refuses_a_batch_beyond_its_buffers(fake_cudart):
    pipeline = DevicePipeline(SHAPES, toy_steps(), inflight=2, max_batch=2,
                              shared={"w_key": cuda_module.DeviceBuffer(24)})
    with pytest.raises(BackendError, match="--batch"):
        pipeline.submit(np.zeros((3, 3, 4, 4), np.float32))
    pipeline.close()


def test_every_cuda_error_code_becomes_a_one_line_cuda_error(monkeypatch):
    fake = FakeCudart(fail={"cudaMalloc": Code(2, "cudaErrorMemoryAllocation")})
    monkeypatch.setattr(cuda_module, "_runtime", fake)
    with pytest.raises(CudaError) as info:
        cuda_module.DeviceBuffer(1024)
    message = str(info.value)
    assert "cudaErrorMemoryAllocation" in message and "--inflight" in message and "\n" not in message


def test_cuda_call_unwraps_values():
    assert cuda_module.cuda_call((Code(0, "cudaSuccess"),)) is None
    assert cuda_module.cuda_call((Code(0, "cudaSuccess"), 7)) == 7
    assert cuda_module.cuda_call((Code(0, "cudaSuccess"), 1, 2)) == (1, 2)
    with pytest.raises(CudaError, match="cudaErrorNoDevice.*doctor"):
        cuda_module.cuda_call((Code(100, "cudaErrorNoDevice"), None))


def test_pinned_buffer_views_alias_its_memory(fake_cudart):
    pinned = cuda_module.PinnedBuffer(64)
    view = pinned.view((2, 2))
    view[...] = 3.0
    assert np.array_equal(pinned.view((4,)), [3.0] * 4)
    with pytest.raises(CudaError, match="cannot hold"):
        pinned.view((5, 5))
    pinned.free()


def test_float_stream_matches_protect_tensor(protector):
    faces = [faces_to_input(f, 256) for f in batches(3, batch=2, seed=1)]
    expected = [protector.protect_tensor(f) for f in faces]
    for got, want in zip(protector.protect_tensor_many(faces, inflight=2), expected, strict=True):
        np.testing.assert_array_equal(got, want)
