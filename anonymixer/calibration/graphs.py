"""The graphs of one precision in an export folder, run by ONNX Runtime on the CPU.

Export-time tooling (calibration, accuracy reports) runs graphs straight from their files, so that
what it measures is exactly what was written, independent of any backend's device plumbing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..export.graphfile import open_session, run_session
from ..export.layout import GRAPHS, PRECISIONS
from ..keymaterial import KEY_INPUTS
from ..runtime.manifest import ExportManifest


class GraphSet:
    """Encoder, mapping, mixer and generator of ``precision`` in export folder ``folder``.

    ``precision`` may also be a form that covers some stages only (``int8-ort``): the other stages
    run their FP32 graphs. ``verify`` checks each file's sha256 against the manifest first (a one-line ``ExportError``
    names a missing, truncated or changed file). Sessions open on first use.
    """

    def __init__(self, folder: str | os.PathLike[str], precision: str = "fp32", verify: bool = True) -> None:
        self.manifest = ExportManifest(folder)
        self.precision = precision
        self.paths: dict[str, Path] = {}
        for stage in GRAPHS:
            has = precision in (self.manifest.data["graphs"].get(stage) or {})
            graph = self.manifest.graph(stage, precision if has or precision in PRECISIONS else "fp32")
            if verify:
                graph.verify()
            self.paths[stage] = graph.path
        self._sessions: dict[str, ort.InferenceSession] = {}

    def run(self, stage: str, feeds: Mapping[str, np.ndarray], batch: int = 2,
            on_chunk: Callable[[int], object] | None = None) -> np.ndarray:
        """Run graph ``stage`` on named float32 arrays, ``batch`` samples at a time; return its output.

        Small batches keep memory bounded at 1024x1024 (a feature map is 134 MB per face there)
        and cost little speed on a CPU.

        Key material (``KEY_INPUTS``, no batch axis) goes whole to every chunk. ``on_chunk(n)`` is
        called after each chunk of ``n`` samples (a progress bar's ``update``).
        """
        if stage not in self._sessions:
            self._sessions[stage] = open_session(self.paths[stage])
        session = self._sessions[stage]
        names = [i.name for i in session.get_inputs()]
        n = len(feeds[names[0]])
        chunks = []
        for start in range(0, n, batch):
            part = {k: v if k in KEY_INPUTS else v[start:start + batch]
                    for k, v in feeds.items() if k in names}
            chunks.append(run_session(session, part))
            if on_chunk is not None:
                on_chunk(len(chunks[-1]))
        return np.concatenate(chunks)

    def close(self) -> None:
        """Drop the sessions (a 1024 model holds gigabytes in them); ``run`` reopens as needed."""
        self._sessions.clear()
