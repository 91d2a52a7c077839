"""Reading an export folder (``anonymixer export``) as the runtimes need it.

The folder layout and ``manifest.json`` are defined in ``anonymixer.export.layout``; this module
only reads them, checks them, and answers the questions a backend asks: which file holds graph G
at precision P, is it intact, what are its input shapes, and what ``ModelInfo`` does it describe.
Every problem is one line naming the file, with what to do about it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digest import sha256_file
from .. import codestats
from ..errors import AnonymixerError, ExportError
from ..keymaterial import check_mode
from ..export.layout import GRAPHS, MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, PRECISIONS
from .base import ModelInfo

REEXPORT = "re-export it with `anonymixer export`"


@dataclass(frozen=True)
class GraphEntry:
    """One ONNX graph of the folder: ``path`` and what the manifest says about it."""

    stage: str
    precision: str
    path: Path
    sha256: str | None
    external_data: tuple[Path, ...]
    inputs: tuple[dict[str, Any], ...]     # [{"name", "dtype", "shape"}], "batch" for the dynamic axis
    outputs: tuple[dict[str, Any], ...]

    def verify(self, check_hash: bool = True) -> None:
        """Raise a one-line ``ExportError`` if the file or its external data is missing or changed."""
        for path in (self.path, *self.external_data):
            if not path.is_file():
                raise ExportError(f"{path}: missing ONNX file listed in {MANIFEST}; {REEXPORT}")
        if check_hash and self.sha256 and sha256_file(self.path) != self.sha256:
            raise ExportError(f"{self.path}: corrupt ONNX file (its sha256 does not match {MANIFEST}); "
                              f"{REEXPORT}")


class ExportManifest:
    """``DIR/manifest.json``, checked for format and version."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not self.folder.is_dir():
            raise ExportError(f"{self.folder}: no such export folder; create one with `anonymixer export`")
        if not path.is_file():
            raise ExportError(f"{path}: missing; {self.folder} is not an export folder "
                              "(create one with `anonymixer export`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportError(f"{path}: corrupt manifest ({type(exc).__name__}); {REEXPORT}") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ExportError(f"{path}: not an anonymixer export manifest (format must be "
                              f"{MANIFEST_FORMAT!r}); {REEXPORT}")
        if data.get("version") != MANIFEST_VERSION:
            raise ExportError(f"{path}: manifest version {data.get('version')!r} is not supported "
                              f"(this anonymixer reads version {MANIFEST_VERSION}); {REEXPORT}")
        if not isinstance(data.get("graphs"), dict) or not isinstance(data.get("model"), dict):
            raise ExportError(f"{path}: manifest has no 'graphs' or 'model' table; {REEXPORT}")
        self.path = path
        self.data: dict[str, Any] = data

    def precisions(self, stage: str) -> list[str]:
        """Precisions exported for ``stage``, in ``PRECISIONS`` order."""
        entries = self.data["graphs"].get(stage) or {}
        return [p for p in PRECISIONS if p in entries]

    def graph(self, stage: str, precision: str = "fp32") -> GraphEntry:
        """The entry of graph ``stage`` at ``precision``; ``ExportError`` if the folder lacks it."""
        if stage not in GRAPHS:
            raise ExportError(f"unknown graph {stage!r}; graphs are {', '.join(GRAPHS)}")
        entry = (self.data["graphs"].get(stage) or {}).get(precision)
        if not isinstance(entry, dict) or "file" not in entry:
            have = ", ".join(self.precisions(stage)) or "none"
            raise ExportError(f"{self.path}: no {precision} {stage} graph (exported: {have}); "
                              f"export it with `anonymixer export --precision {precision}`")
        return GraphEntry(
            stage=stage, precision=precision, path=self.folder / entry["file"], sha256=entry.get("sha256"),
            external_data=tuple(self.folder / name for name in entry.get("external_data") or ()),
            inputs=tuple(entry.get("inputs") or ()), outputs=tuple(entry.get("outputs") or ()))

    def model_info(self) -> ModelInfo:
        """The ``ModelInfo`` the Protector needs, from the manifest's top-level fields."""
        try:
            model = self.data["model"]
            return ModelInfo(name=str(model["name"]), description=str(model.get("description") or model["name"]),
                             input_size=int(self.data["input_size"]), style_dim=int(self.data["style_dim"]),
                             n_latent=int(self.data["n_latent"]),
                             output_resolution=int(self.data["output_resolution"]),
                             is_random=bool(model.get("is_random", False)),
                             mixer_mode=check_mode(str(self.data["mixer_mode"])),
                             project_rank=None if self.data.get("project_rank") is None else int(self.data["project_rank"]),
                             code_stats=self._code_stats())
        except ExportError:
            raise
        except AnonymixerError as exc:   # an unknown mixer mode
            raise ExportError(f"{self.path}: {exc}; {REEXPORT}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{self.path}: manifest lacks or garbles field {exc}; {REEXPORT}") from None

    def _code_stats(self) -> codestats.CodeStats:
        """``code_stats.npz``, checked against the manifest's sha256 (the key material depends on it)."""
        listed = (self.data.get("files") or {}).get(codestats.STATS_FILE) or {}
        path = self.folder / codestats.STATS_FILE
        if listed.get("sha256") and path.is_file() and sha256_file(path) != listed["sha256"]:
            raise ExportError(f"{path}: corrupt code statistics (its sha256 does not match {MANIFEST}); {REEXPORT}")
        return codestats.load(self.folder)

    def check_output_resolution(self, wanted: int | None) -> None:
        """Refuse a resolution the folder was not exported at (early exit is baked into the graph)."""
        have = self.model_info().output_resolution
        if wanted is not None and wanted != have:
            raise ExportError(f"{self.folder} was exported with output resolution {have}, not {wanted}; "
                              f"drop --resolution, or export again with `anonymixer export --resolution {wanted}`")
