"""The PyTorch reference backend (CPU or CUDA): the networks as written in ``anonymixer.models``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..errors import BackendError
from ..models.bundle import ModelBundle, resolve_spec
from ..models.mixer import KeyMapping, Mixer
from .base import STAGE_IO, ModelInfo


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


class TorchBackend:
    """Encoder, key mapping, mixer and generator of a bundle (or model SPEC) as PyTorch modules.

    ``layer_mask``/``mixer_mode``/``truncation_psi`` default to the bundle's; ``output_resolution``
    stops the generator early (e.g. 256 from a 1024 model).
    """

    name = "torch"

    def __init__(self, model: str | ModelBundle, device: str = "cpu", output_resolution: int | None = None,
                 layer_mask: tuple[int, ...] | None = None, mixer_mode: str | None = None,
                 truncation_psi: float | None = None) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"torch backend: device {device!r} asked for, but this PyTorch has no CUDA "
                               "device; use --device cpu")
        self.device = torch.device(device)
        bundle = resolve_spec(model)
        cfg = bundle.config
        generator = bundle.build_generator(output_resolution)
        mode = mixer_mode or ("learned" if bundle.mixer is not None else "swap")
        mixer = Mixer(cfg.n_latent, cfg.generator.style_dim, layer_mask or cfg.layer_mask, mode)
        if mode == "learned" and bundle.mixer is not None:
            mixer.load_state_dict(bundle.mixer, strict=True)
        psi = cfg.truncation_psi if truncation_psi is None else truncation_psi
        self.info = ModelInfo(name=cfg.name, description=bundle.description,
                              input_size=cfg.encoder.input_size, style_dim=cfg.generator.style_dim,
                              n_latent=cfg.n_latent,
                              output_resolution=generator.synthesis.output_resolution or cfg.generator.size,
                              is_random=bundle.is_random)
        self.stages = {
            "encoder": TorchStage("encoder", bundle.build_encoder(), self.device),
            "mapping": TorchStage("mapping", KeyMapping(generator.mapping, generator.w_avg, cfg.n_latent, psi),
                                  self.device),
            "mixer": TorchStage("mixer", mixer, self.device),
            "generator": TorchStage("generator", generator, self.device),
        }

    def stage(self, name: str) -> TorchStage:
        return self.stages[name]

    def describe(self) -> str:
        return f"torch {torch.__version__} on {self.device} (fp32)"

    def close(self) -> None:
        self.stages.clear()

    def __enter__(self) -> "TorchBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
