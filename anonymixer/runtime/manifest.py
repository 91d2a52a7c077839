"""Reading an export folder (``anonymixer export``) as the runtimes need it.

The folder layout and ``manifest.json`` are defined in ``anonymixer.export.layout``; this module
only reads them, checks them, and answers the questions a backend asks: which file holds graph G
at precision P, is it intact, what are its input shapes, and what ``ModelInfo`` does it describe.
Every problem is one line naming the file, with what to do about it.

Integrity: every file a runtime reads from the folder (graphs, external weight files, the code
statistics ``code_stats.npz``; engines and their sidecars in an engine folder) must be listed in the manifest's ``files`` table with its
sha256, and is hashed before use (``verify_file``). A file that is not listed, or listed without a
sha256, is refused, never skipped; so is a name that leaves the folder. A graph's own hash pins the
external data files it reads, and those are listed and hashed too. Every field of the manifest is
covered by its ``digest`` (``export.layout.manifest_digest``), checked before any field is read, so a
hand-edited ``crop_template`` or ``mixer_mode`` is refused too. Whoever can rewrite the manifest can
recompute that digest: under a trusted key (``anonymixer.signing``) the manifest must also carry a
signature that checks with it (see docs/integrity.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from ..digest import sha256_file
from .. import codestats
from ..errors import AnonymixerError, EngineIntegrityError, ExportError, ExportIntegrityError, IntegrityError
from ..keymaterial import check_mode
from ..export.layout import (DIGEST, ENGINE_FOLDER, GRAPHS, MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, PRECISIONS,
                             manifest_digest)
from ..models.configs import check_output_resolution
from .base import ModelInfo

REEXPORT = "re-export it with `anonymixer export`"
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    manifest: "ExportManifest"

    def verify(self) -> None:
        """Check the graph and its external data files against the manifest's ``files`` table.

        A one-line ``ExportIntegrityError`` names a file that is missing, unlisted, listed without
        a sha256, or changed, with the command that re-creates the folder.
        """
        digest = self.manifest.verify_file(self.path.name)
        if self.sha256 is not None and self.sha256 != digest:
            raise self.manifest.integrity_error(self.path, f"{MANIFEST} gives it two different sha256 values "
                                                           "(graphs and files tables)")
        for path in self.external_data:
            self.manifest.verify_file(path.name)


def _parity_failed(entries: Any) -> bool:
    """Whether a stage's manifest entries record an FP32 graph out of tolerance against PyTorch."""
    fp32 = entries.get("fp32") if isinstance(entries, dict) else None
    parity = fp32.get("parity") if isinstance(fp32, dict) else None
    return isinstance(parity, dict) and parity.get("passed") is False


def rebuild_command(onnx_dir: str | None, out_dir: str | os.PathLike[str], precision: str,
                    batch: Sequence[int] | None) -> str:
    """The ``anonymixer build`` command line that rebuilds an engine folder."""
    batch_text = f" --batch {','.join(str(b) for b in batch)}" if batch else ""
    return (f"anonymixer build --onnx {onnx_dir or 'ONNX_DIR'} --out {out_dir} "
            f"--precision {precision}{batch_text}")


class ExportManifest:
    """``DIR/manifest.json``, checked for format, version and digest (and signature, under a trusted key)."""

    def __init__(self, folder: str | os.PathLike[str], check_signature: bool = True) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not self.folder.is_dir():
            raise ExportError(f"{self.folder}: no such export folder; create one with `anonymixer export`")
        if not path.is_file():
            raise ExportError(f"{path}: missing; {self.folder} is not an export folder "
                              "(create one with `anonymixer export`)")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ExportError(f"{path}: unreadable manifest ({type(exc).__name__}); {REEXPORT}") from None
        if check_signature:   # on the bytes parsed below, so the file cannot change in between
            from ..signing import check_signed

            check_signed(self.folder, hashlib.sha256(raw).hexdigest())
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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
        if not isinstance(data.get(DIGEST), str):
            raise self.integrity_error(path, f"has no {DIGEST!r} of its fields (written by an anonymixer that did not "
                                             "record one), so an edited field could not be seen")
        if data[DIGEST] != manifest_digest(data):
            raise self.integrity_error(path, f"its fields do not match its {DIGEST!r} (edited by hand or damaged)")
        failed = [stage for stage, entries in data["graphs"].items() if _parity_failed(entries)]
        if failed:  # `anonymixer export` refused this folder: its graphs compute something else than the model
            raise ExportError(f"{path}: {', '.join(failed)} failed the export's parity check against PyTorch "
                              f"(see \"parity\" in the manifest); {REEXPORT}")

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
        names = [entry["file"], *(entry.get("external_data") or ())]
        for name in names:
            self.inside(name)
        return GraphEntry(
            stage=stage, precision=precision, path=self.folder / names[0], sha256=entry.get("sha256"),
            external_data=tuple(self.folder / name for name in names[1:]),
            inputs=tuple(entry.get("inputs") or ()), outputs=tuple(entry.get("outputs") or ()), manifest=self)

    @property
    def is_engine_folder(self) -> bool:
        return isinstance(self.data.get(ENGINE_FOLDER), dict)

    def rebuild_command(self, precision: str | None = None) -> str:
        """The command that re-creates this folder: ``anonymixer build`` or ``anonymixer export``."""
        if self.is_engine_folder:
            built = self.data[ENGINE_FOLDER]
            return rebuild_command(built.get("onnx_dir"), self.folder, precision or "PRECISION", built.get("batch"))
        model = self.data.get("model") or {}
        command = f"anonymixer export --model {model.get('spec') or 'BUNDLE'} --out {self.folder}"
        present = [p for p in PRECISIONS if any(p in (self.data["graphs"].get(s) or {}) for s in GRAPHS)]
        if present and present != ["fp32"]:
            command += f" --precision {','.join(present)}"
        size = ((model.get("config") or {}).get("generator") or {}).get("size")
        if self.data.get("output_resolution") not in (None, size):
            command += f" --resolution {self.data['output_resolution']}"
        return command + " --force"

    def integrity_error(self, path: Path, problem: str, precision: str | None = None) -> IntegrityError:
        """A one-line integrity error about ``path`` that ends with the command rebuilding the folder."""
        kind = EngineIntegrityError if self.is_engine_folder else ExportIntegrityError
        return kind(f"{path}: {problem}; refusing to use it: re-create the folder with "
                    f"`{self.rebuild_command(precision)}`")

    def inside(self, name: Any) -> Path:
        """``folder/name`` for a plain file name; an integrity error for anything that leaves the folder."""
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise self.integrity_error(self.path, f"names {name!r}, which is not a file of {self.folder}")
        return self.folder / name

    def verify_file(self, name: str, precision: str | None = None) -> str:
        """Hash ``folder/name`` and compare with the manifest's ``files`` table; return the sha256.

        Refused (one line, with the rebuild command): a name outside the folder, a file not listed,
        listed without a sha256, missing, or whose size or sha256 differs.
        """
        path = self.inside(name)
        files = self.data.get("files")
        listed = files.get(name) if isinstance(files, dict) else None
        expected = listed.get("sha256") if isinstance(listed, dict) else None
        if not isinstance(listed, dict):
            raise self.integrity_error(path, f"not listed in the 'files' table of {MANIFEST}", precision)
        if not isinstance(expected, str) or not _SHA256.fullmatch(expected):
            raise self.integrity_error(path, f"listed without a sha256 in {MANIFEST}, so it cannot be checked",
                                       precision)
        if not path.is_file():
            raise self.integrity_error(path, f"missing (listed in {MANIFEST})", precision)
        size = listed.get("bytes")
        if (isinstance(size, int) and path.stat().st_size != size) or sha256_file(path) != expected:
            raise self.integrity_error(path, f"does not match its sha256 in {MANIFEST} (damaged or altered)",
                                       precision)
        return expected

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
                             code_stats=self._code_stats(),
                             crop_template=_template(self.data.get("crop_template")))
        except (ExportError, IntegrityError):
            raise
        except AnonymixerError as exc:   # an unknown mixer mode
            raise ExportError(f"{self.path}: {exc}; {REEXPORT}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{self.path}: manifest lacks or garbles field {exc}; {REEXPORT}") from None

    def _code_stats(self) -> codestats.CodeStats:
        """``code_stats.npz``, hashed against the manifest first (the key material depends on it)."""
        self.verify_file(codestats.STATS_FILE)
        return codestats.load(self.folder)

    def check_output_resolution(self, wanted: int | None) -> None:
        """Refuse a resolution the folder was not exported at (early exit is baked into the graph)."""
        have = self.model_info().output_resolution
        if wanted is None:
            return
        size = ((self.data["model"].get("config") or {}).get("generator") or {}).get("size")
        check_output_resolution(int(wanted), size if isinstance(size, int) else have)
        if wanted != have:
            raise ExportError(f"{self.folder} was exported with output resolution {have}, not {wanted}; "
                              f"drop --resolution, or export again with `anonymixer export --resolution {wanted}`")


def _template(value: object) -> tuple[tuple[float, float], ...] | None:
    """The manifest's ``crop_template`` (five ``[x, y]`` fractions, or null for FFHQ alignment)."""
    if value is None:
        return None
    points = tuple((float(x), float(y)) for x, y in value)  # type: ignore[attr-defined]
    if len(points) != 5:
        raise ValueError("crop_template")
    return points
