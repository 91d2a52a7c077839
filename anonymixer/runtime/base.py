"""The backend protocol: every backend runs the same four graphs with the same tensor names.

Shaped like Polygraphy's runners: a backend opens one ``StageRunner`` per graph; a runner takes
named NumPy arrays and returns named NumPy arrays. Everything above (Protector, benchmarks, parity
tests) is written once against this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..codestats import CodeStats, identity

# Graph name -> (input names, output names). Shapes (B = batch, L = W+ layers, D = style dim):
#   encoder   face (B, 3, S, S) float32 in [-1, 1], S = 256|64 -> w_real (B, L, D)
#   mapping   z (B, D) float32                                -> w_key (B, L, D), truncated
#   mixer     w_real (B, L, D), key_matrix (D, D),            -> w_prot (B, L, D)
#             key_offset (L, D): key material, no batch axis (anonymixer.keymaterial)
#   generator w_prot (B, L, D)                                -> image (B, 3, R, R) float32, ~[-1, 1]
STAGE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "encoder": (("face",), ("w_real",)),
    "mapping": (("z",), ("w_key",)),
    "mixer": (("w_real", "key_matrix", "key_offset"), ("w_prot",)),
    "generator": (("w_prot",), ("image",)),
}
FRAME_STAGES = ("encoder", "mixer", "generator")


@dataclass(frozen=True)
class ModelInfo:
    """What the Protector needs to know of the model behind a backend (from a bundle or a manifest)."""

    name: str                 # config name: tiny, ffhq256, ffhq1024, faces64
    description: str          # one line for logs: where the weights came from
    input_size: int           # aligned face side S: 256 (e4e), 64 (faces64)
    style_dim: int            # D
    n_latent: int             # L
    output_resolution: int    # R
    is_random: bool           # seeded random weights: pipeline and latency checks only
    mixer_mode: str = "project"                # baked into the mixer graph (anonymixer.keymaterial)
    project_rank: int | None = None            # ``project``'s kept dimensions (None: D // 2)
    code_stats: CodeStats | None = field(default=None, compare=False)   # None: mu = 0, C = I
    # Where the five landmarks sit in the aligned crop, (x, y) fractions of its side, in
    # face.detect.LANDMARKS order; None: the FFHQ quad (face.align.ffhq_quad).
    crop_template: tuple[tuple[float, float], ...] | None = None

    def stats(self) -> CodeStats:
        """The model's code statistics (``mu``, ``C``) for the key material."""
        return self.code_stats or identity(self.style_dim)


class StageRunner(Protocol):
    """One graph on one backend."""

    stage: str

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named float32 arrays; return its named outputs."""
        ...


class Backend(Protocol):
    """A set of runners for the four graphs. Use as a context manager."""

    name: str
    info: ModelInfo

    def stage(self, name: str) -> StageRunner:
        """The runner of graph ``name`` (one of ``STAGE_IO``)."""
        ...

    def describe(self) -> str:
        """One line for logs: backend, device, precision."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> "Backend":
        ...

    def __exit__(self, *exc: object) -> None:
        ...
