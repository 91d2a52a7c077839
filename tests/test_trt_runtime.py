"""The TensorRT backend's plumbing on stand-ins: fake engines over the host-memory fake of cuda-python.

What runs for real here: TrtStage (named tensors, set_tensor_address / set_input_shape /
execute_async_v3, one execution context per slot, CUDA graph capture and replay), TrtBackend's
key upload and pipeline, DevicePipeline, and the Protector on top. What does not: TensorRT and a GPU
(see tests that skip below, and benchmarks/gpu_check.py).
"""

import ctypes
import importlib.util

import numpy as np
import pytest

from anonymixer.errors import BackendError, EngineError
from anonymixer.keys import Key
from anonymixer.runtime import Protector
from anonymixer.runtime import cuda as cuda_module
from anonymixer.runtime.base import ModelInfo
from anonymixer.runtime.trt import TrtBackend, TrtStage
from conftest import TEST_SECRET
from fakecuda import CapturingCudart

IO = type("IO", (), {"INPUT": "INPUT", "OUTPUT": "OUTPUT"})
SAMPLES = {"face": (3, 4, 4), "z": (3,), "w_real": (2, 3), "w_key": (2, 3), "w_prot": (2, 3), "image": (3, 2, 2),
           "key_matrix": (3, 3), "key_offset": (2, 3)}
INFO = ModelInfo(name="toy", description="toy", input_size=4, style_dim=3, n_latent=2, output_resolution=2,
                 is_random=True)


def toy(stage, **x):
    """What each toy engine computes, on NumPy arrays."""
    if stage == "mapping":
        return {"w_key": x["z"][:, None, :] * np.array([[1.0], [2.0]], np.float32)}
    if stage == "encoder":
        return {"w_real": x["face"].sum(axis=(1, 2, 3))[:, None, None] + np.arange(6, dtype=np.float32).reshape(2, 3)}
    if stage == "mixer":
        return {"w_prot": x["w_real"] @ x["key_matrix"] + x["key_offset"]}
    return {"image": np.broadcast_to(x["w_prot"].mean(axis=(1, 2))[:, None, None, None],
                                     (x["w_prot"].shape[0], 3, 2, 2)).copy()}


IO_NAMES = {"mapping": (("z",), ("w_key",)), "encoder": (("face",), ("w_real",)),
            "mixer": (("w_real", "key_matrix", "key_offset"), ("w_prot",)), "generator": (("w_prot",), ("image",))}


def host_array(ptr, shape):
    count = int(np.prod(shape))
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (count,)).reshape(shape)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.addresses, self.shapes, self.runs = engine, {}, {}, 0
        self.address_calls = 0

    def set_tensor_address(self, name, ptr):
        self.address_calls += 1
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return shape[0] <= self.engine.max_batch

    def execute_async_v3(self, stream_handle):
        assert isinstance(stream_handle, int)
        addresses, shapes = dict(self.addresses), dict(self.shapes)
        inputs, outputs = IO_NAMES[self.engine.stage]

        def work():
            self.runs += 1
            x = {n: host_array(addresses[n], shapes[n]).copy() for n in inputs}
            for name, value in toy(self.engine.stage, **x).items():
                host_array(addresses[name], value.shape)[...] = value

        self.engine.cudart.enqueue(work)
        return True


class FakeEngine:
    def __init__(self, stage, cudart, max_batch=4, names=None):
        self.stage, self.cudart, self.max_batch = stage, cudart, max_batch
        inputs, outputs = names or IO_NAMES[stage]
        self.modes = {**{n: "INPUT" for n in inputs}, **{n: "OUTPUT" for n in outputs}}
        self.num_io_tensors = len(self.modes)
        self.contexts = []

    def get_tensor_name(self, index):
        return list(self.modes)[index]

    def get_tensor_mode(self, name):
        return self.modes[name]

    def get_tensor_profile_shape(self, name, profile):
        return [(1, *SAMPLES[name]), (1, *SAMPLES[name]), (self.max_batch, *SAMPLES[name])]

    def create_execution_context(self):
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


@pytest.fixture
def cudart(monkeypatch):
    fake = CapturingCudart()
    monkeypatch.setattr(cuda_module, "_runtime", fake)
    return fake


def fake_backend(cudart, cuda_graphs=False):
    backend = TrtBackend.__new__(TrtBackend)   # everything but __init__'s TensorRT and GPU checks
    backend.info, backend.folder, backend.precision, backend.device_name = INFO, None, "fp16", "fake GPU"
    backend.keys = {}
    backend.stages = {s: TrtStage(s, FakeEngine(s, cudart), SAMPLES, cuda_graphs, io_mode=IO) for s in IO_NAMES}
    return backend


def reference(face, key_feeds):
    return toy("generator", **toy("mixer", w_real=toy("encoder", face=face)["w_real"], **key_feeds))["image"]


def frames(batches=(1, 2, 4, 3, 2, 1, 4)):
    rng = np.random.default_rng(0)
    return [rng.normal(size=(b, 3, 4, 4)).astype(np.float32) for b in batches]


def test_a_stage_runs_numpy_through_pinned_and_device_buffers(cudart):
    stage = TrtStage("mapping", FakeEngine("mapping", cudart), SAMPLES, io_mode=IO)
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(stage.run({"z": z})["w_key"], toy("mapping", z=z)["w_key"])
    stage.close()


@pytest.mark.parametrize("cuda_graphs", [False, True])
@pytest.mark.parametrize("inflight", [1, 3])
def test_protector_on_the_trt_plumbing_gives_each_frame_its_result_in_order(cudart, inflight, cuda_graphs):
    backend = fake_backend(cudart, cuda_graphs)
    protector = Protector(None, Key(TEST_SECRET), backend=backend)
    assert protector.key_feeds["key_matrix"].shape == (3, 3) and protector.key_feeds["key_offset"].shape == (2, 3)
    # A graph is kept per slot for its current batch size (TensorRT must re-capture when shapes change).
    inputs = frames((2,) * 6 + (3,) * 6 if cuda_graphs else (1, 2, 4, 3, 2, 1, 4))
    out = list(protector.protect_tensor_many(inputs, inflight=inflight))
    for got, face in zip(out, inputs, strict=True):
        np.testing.assert_allclose(got, reference(face, protector.key_feeds), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(protector.protect_tensor(inputs[-1]), out[-1], rtol=1e-6)
    mixer_contexts = backend.stages["mixer"].engine.contexts
    assert len(mixer_contexts) == inflight + 1          # one per slot, one for protect_tensor
    assert all(c.shapes["key_matrix"] == (3, 3) and c.shapes["key_offset"] == (2, 3) for c in mixer_contexts)
    if cuda_graphs:
        assert cudart.launches > 0
    backend.close()
    assert cudart.blocks == {}                           # keys, stage buffers and pipeline buffers all freed


def test_buffers_are_bound_once_per_slot_not_per_frame(cudart):
    backend = fake_backend(cudart)
    protector = Protector(None, Key(TEST_SECRET), backend=backend)
    list(protector.protect_tensor_many(frames((2,) * 6), inflight=2))
    contexts = backend.stages["encoder"].engine.contexts
    assert len(contexts) == 2                                  # one per slot
    assert [c.address_calls for c in contexts] == [2, 2]       # face and w_real, bound once
    assert sum(c.runs for c in contexts) == 6


def test_cuda_graph_is_captured_once_per_slot_and_batch_then_replayed(cudart):
    stage = TrtStage("encoder", FakeEngine("encoder", cudart), SAMPLES, cuda_graphs=True, io_mode=IO)
    face = frames((2,))[0]
    for _ in range(3):
        np.testing.assert_allclose(stage.run({"face": face})["w_real"], toy("encoder", face=face)["w_real"])
    context = stage.engine.contexts[0]
    assert cudart.launches == 2 and context.runs == 3   # warm-up (then capture), then replays only
    stage.run({"face": frames((3,))[0]})                     # a new batch size: captured again
    assert len(stage.graphs) == 1 and stage.graphs[-1][0] == 3
    stage.close()


def test_a_batch_beyond_the_profile_is_refused_with_the_build_option(cudart):
    stage = TrtStage("encoder", FakeEngine("encoder", cudart, max_batch=2), SAMPLES, io_mode=IO)
    with pytest.raises(BackendError, match="--batch"):
        stage.run({"face": frames((3,))[0]})
    stage.close()


def test_an_engine_with_other_tensor_names_is_refused():
    engine = FakeEngine("encoder", None, names=(("image_in",), ("w_real",)))
    with pytest.raises(EngineError, match="rebuild"):
        TrtStage("encoder", engine, {**SAMPLES, "image_in": (3, 4, 4)}, io_mode=IO)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None
                    or importlib.util.find_spec("tensorrt").origin is None,
                    reason="needs TensorRT (pip install 'anonymixer[trt]') and an NVIDIA GPU")
def test_real_engines_match_the_ort_backend(tmp_path):  # pragma: no cover - GPU machines only
    from anonymixer.export.onnx import export_onnx
    from anonymixer.runtime.build import build_engines

    export_onnx("random:tiny", tmp_path / "onnx", progress=False)
    build_engines(tmp_path / "onnx", tmp_path / "engines", precision="fp32", batch=(1, 2, 4))
    key = Key(TEST_SECRET)
    faces = frames((2, 1, 3))
    faces = [np.random.default_rng(1).uniform(-1, 1, (f.shape[0], 3, 256, 256)).astype(np.float32) for f in faces]
    ort = Protector(str(tmp_path / "onnx"), key, backend="ort")
    trt = Protector(str(tmp_path / "engines"), key, backend="trt")
    for got, face in zip(trt.protect_tensor_many(faces, inflight=3), faces, strict=True):
        want = ort.protect_tensor(face)
        assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-3
