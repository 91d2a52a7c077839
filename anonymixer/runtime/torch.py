"""The PyTorch reference backend (CPU or CUDA): the networks as written in ``anonymixer.models``.

On CUDA, ``open_pipeline`` keeps several frames in flight on their own ``torch.cuda.Stream``s
(``TorchCudaPipeline``); on the CPU it pipelines the stages with threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import BackendError
from ..models.bundle import ModelBundle, resolve_spec
from ..codestats import CodeStats
from ..keymaterial import check_rank
from ..models.bundle import bundle_code_stats
from ..models.mixer import KeyMapping, Mixer
from .base import FRAME_STAGES, STAGE_IO, ModelInfo
from .stream import FramePipeline, ThreadPipeline


class TorchStage:
    """A module behind the runner protocol: NumPy in, NumPy out, no autograd."""

    def __init__(self, stage: str, module: nn.Module, device: torch.device) -> None:
        self.stage = stage
        self.module = module.to(device).eval()
        self.device = device
        self.input_names, self.output_names = STAGE_IO[stage]

    @torch.inference_mode()
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)).to(self.device)
                for name in self.input_names]
        out = self.module(*args)
        return {self.output_names[0]: out.float().cpu().numpy()}


@dataclass
class StageModules:
    """The four graphs of a bundle as PyTorch modules (eval mode, CPU), and the settings they were built with."""

    bundle: ModelBundle
    modules: dict[str, nn.Module]     # keyed by STAGE_IO's graph names
    info: ModelInfo
    layer_mask: tuple[int, ...]
    mixer_mode: str
    truncation_psi: float
    code_stats: CodeStats
    radius_guard: bool


DEFAULT_MIXER_MODE = "project"   # chosen on faces64 + dlib: README "Mixer modes", benchmarks/RESULTS.md


def build_stage_modules(model: str | ModelBundle, output_resolution: int | None = None,
                        layer_mask: tuple[int, ...] | None = None, mixer_mode: str | None = None,
                        truncation_psi: float | None = None, project_rank: int | None = None,
                        radius_guard: bool = True) -> StageModules:
    """Encoder, key mapping, mixer and generator of a bundle or model SPEC, as the runtimes see them.

    ``layer_mask``/``mixer_mode``/``truncation_psi`` default to the bundle's (``learned`` when the
    bundle holds a mixer, else ``DEFAULT_MIXER_MODE``); ``project_rank`` and ``radius_guard`` shape
    the mixer (``anonymixer.keymaterial``); ``output_resolution`` stops the generator early. The torch
    backend and the ONNX export both build their graphs here, so they cannot drift apart.
    """
    bundle = resolve_spec(model)
    cfg = bundle.config
    generator = bundle.build_generator(output_resolution)
    mode = mixer_mode or ("learned" if bundle.mixer is not None else DEFAULT_MIXER_MODE)
    stats = bundle_code_stats(bundle, generator)
    mixer = Mixer(cfg.n_latent, cfg.style_dim, layer_mask or cfg.layer_mask, mode, stats=stats,
                  radius_guard=radius_guard)
    mapping, w_avg = generator.mapping, generator.w_avg  # every family's generator has both
    assert isinstance(mapping, nn.Module) and isinstance(w_avg, torch.Tensor)
    if mode == "learned" and bundle.mixer is not None:
        mixer = bundle.load_module("mixer", lambda: mixer, bundle.mixer)
    psi = cfg.truncation_psi if truncation_psi is None else float(truncation_psi)
    rank = check_rank(project_rank, cfg.style_dim) if mode == "project" else None
    info = ModelInfo(name=cfg.name, description=bundle.description, input_size=cfg.input_size,
                     style_dim=cfg.style_dim, n_latent=cfg.n_latent,
                     output_resolution=int(getattr(generator, "output_resolution", None) or cfg.output_size),
                     is_random=bundle.is_random, mixer_mode=mode, project_rank=rank, code_stats=stats,
                     crop_template=cfg.crop_template)
    modules: dict[str, nn.Module] = {
        "encoder": bundle.build_encoder(),
        "mapping": KeyMapping(mapping, w_avg, cfg.n_latent, psi).eval(),
        "mixer": mixer.eval(),
        "generator": generator,
    }
    return StageModules(bundle=bundle, modules=modules, info=info, layer_mask=mixer.layer_mask,
                        mixer_mode=mode, truncation_psi=psi, code_stats=stats, radius_guard=mixer.radius_guard)


class TorchBackend:
    """Encoder, key mapping, mixer and generator of a bundle (or model SPEC) as PyTorch modules.

    ``layer_mask``/``mixer_mode``/``truncation_psi`` default to the bundle's; ``output_resolution``
    stops the generator early (e.g. 256 from a 1024 model).
    """

    name = "torch"

    def __init__(self, model: str | ModelBundle, device: str = "cpu", output_resolution: int | None = None,
                 layer_mask: tuple[int, ...] | None = None, mixer_mode: str | None = None,
                 truncation_psi: float | None = None, project_rank: int | None = None,
                 radius_guard: bool = True) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"torch backend: device {device!r} asked for, but this PyTorch has no CUDA "
                               "device; use --device cpu")
        self.device = torch.device(device)
        built = build_stage_modules(model, output_resolution, layer_mask, mixer_mode, truncation_psi,
                                    project_rank, radius_guard)
        self.info = built.info
        self.stages = {name: TorchStage(name, module, self.device) for name, module in built.modules.items()}

    def stage(self, name: str) -> TorchStage:
        return self.stages[name]

    def describe(self) -> str:
        return f"torch {torch.__version__} on {self.device} (fp32)"

    def open_pipeline(self, key_feeds: Mapping[str, np.ndarray], inflight: int) -> FramePipeline:
        """``inflight`` frames at once: CUDA streams on a GPU, one thread per stage on the CPU.
        ``key_feeds``: the mixer's key inputs (``KeyMaterial.feeds()``)."""
        if self.device.type == "cuda":
            return TorchCudaPipeline(self, key_feeds, inflight)
        encoder, mixer, generator = (self.stages[s] for s in FRAME_STAGES)
        return ThreadPipeline([lambda face: encoder.run({"face": face})["w_real"],
                               lambda w_real: mixer.run({"w_real": w_real, **key_feeds})["w_prot"],
                               lambda w_prot: generator.run({"w_prot": w_prot})["image"]],
                              inflight, names=FRAME_STAGES)

    def close(self) -> None:
        self.stages.clear()

    def __enter__(self) -> "TorchBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TorchCudaPipeline:
    """Frames in flight on their own CUDA streams (PyTorch); see ``runtime.stream`` for the contract.

    Slot ``i % inflight`` owns a stream and pinned host buffers for input and output. The key
    material is copied to the device once; every slot stream waits on its ready event. Each frame's copy-in,
    encoder, mixer, generator and copy-out are queued on its slot's stream, with a timing event
    after each stage; ``result`` waits for the oldest frame's last event only. Tensors allocated on
    a slot's stream are only reused by that stream (PyTorch's caching allocator is stream-aware).
    """

    def __init__(self, backend: TorchBackend, key_feeds: Mapping[str, np.ndarray], inflight: int) -> None:
        if inflight < 1:
            raise ValueError(f"inflight must be >= 1, got {inflight}")
        self.device, self.inflight = backend.device, inflight
        self.modules = [backend.stages[s].module for s in FRAME_STAGES]
        self.key_inputs = [torch.from_numpy(np.ascontiguousarray(key_feeds[name], dtype=np.float32)).to(self.device)
                           for name in STAGE_IO["mixer"][0][1:]]
        self.key_ready = torch.cuda.Event()
        self.key_ready.record(torch.cuda.current_stream(self.device))
        self.streams = [torch.cuda.Stream(self.device) for _ in range(inflight)]
        self.host_in: list[torch.Tensor | None] = [None] * inflight
        self.host_out: list[torch.Tensor | None] = [None] * inflight
        self.pending: deque[tuple[int, torch.Tensor, list[torch.cuda.Event]]] = deque()
        self.next_slot = 0
        self.last_timings_ms: dict[str, float] = {}

    def _pinned(self, cache: list[torch.Tensor | None], slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        buffer = cache[slot]
        if buffer is None or tuple(buffer.shape) != shape:
            buffer = cache[slot] = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        return buffer

    @torch.inference_mode()
    def submit(self, face: np.ndarray) -> None:
        if len(self.pending) >= self.inflight:
            raise BackendError(f"{self.inflight} frame(s) already in flight: collect a result first")
        slot = self.next_slot
        self.next_slot = (slot + 1) % self.inflight
        stream = self.streams[slot]
        # Safe to overwrite: this slot's previous frame was collected, so its copy-in is done.
        host_in = self._pinned(self.host_in, slot, tuple(face.shape))
        host_in.copy_(torch.from_numpy(np.ascontiguousarray(face, dtype=np.float32)))
        events = [torch.cuda.Event(enable_timing=True) for _ in range(len(FRAME_STAGES) + 1)]
        with torch.cuda.stream(stream):
            stream.wait_event(self.key_ready)
            x = host_in.to(self.device, non_blocking=True)
            events[0].record(stream)
            w_real = self.modules[0](x)
            events[1].record(stream)
            w_prot = self.modules[1](w_real, *self.key_inputs)
            events[2].record(stream)
            image = self.modules[2](w_prot).float()
            events[3].record(stream)
            host_out = self._pinned(self.host_out, slot, tuple(image.shape))
            host_out.copy_(image, non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        self.pending.append((slot, host_out, [*events, done]))

    def result(self) -> np.ndarray:
        if not self.pending:
            raise BackendError("no frame in flight")
        _, host_out, events = self.pending.popleft()
        events[-1].synchronize()
        self.last_timings_ms = {stage: events[i].elapsed_time(events[i + 1]) for i, stage in enumerate(FRAME_STAGES)}
        return host_out.numpy().copy()

    def close(self) -> None:
        for stream in self.streams:
            stream.synchronize()
        self.pending.clear()
