"""Re-keying an archive after a revocation: ``anonymixer rekey``.

A key is revoked by making a new one; every output protected under the revoked key is then made
again from the originals under the new key, into a *new* output tree (the old tree can be deleted
as a whole once the new one is checked). The manifest makes the revocation auditable: per
original, its SHA-256, the output written from it and the output's SHA-256, and for the whole job
the fingerprints of the revoked and the new key. Fingerprints are public ids (``keys.Key``); no
secret, and nothing derived from one other than its fingerprint, is written.

Manifest (UTF-8 JSON, written atomically)::

    {"format": "anonymixer-rekey-manifest", "version": 1, "created": "2026-12-01T07:00:00Z",
     "anonymixer": "0.x", "model": "...", "revoked_key": "3f2a-...", "new_key": "91c0-...",
     "settings": {"model", "onnx", "engines", "precision", "resolution", "salt": fingerprint},
     "complete": true, "interrupted_by": null | "SIGTERM",
     "inputs": 32, "protected": 29, "failed": 3, "not_done": 0,
     "files": [{"input": "archive/a.jpg", "input_sha256": "...", "output": "new/a.jpg",
                "output_sha256": "...", "status": "protected"},
               {"input": "archive/bad.jpg", "input_sha256": "...", "output": null,
                "output_sha256": null, "status": "failed", "problems": ["archive/bad.jpg: ..."]}],
     "not_done_inputs": ["archive/c.jpg", ...]}

``status`` is ``failed`` when nothing usable was written (unreadable input, unwritable output) or
a face had to be masked (fail closed: the output exists but is not a faithful protection); such
inputs need attention before the old tree is deleted. ``inputs`` counts every original of the job;
an interrupted run (Ctrl-C, SIGTERM) writes ``"complete": false`` and lists the originals it did
not get to in ``not_done_inputs``. ``anonymixer rekey ... --resume`` finishes such a job: an
original whose entry is ``protected``, whose sha256 is unchanged and whose output is still there
with its recorded sha256 is kept as it is; every other one is protected again. A resume must use
the same keys and settings (model, folders, precision, resolution, salt) as the run it finishes.

The manifest path (``--manifest``) is checked before any work: it must not be an input or the output
of one, a folder, or in a folder that cannot be written.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import write_json
from .digest import sha256_file
from .errors import AnonymixerError, KeyFileError, OutputError
from .face.runreport import RunReport
from .face.sources import Source

MANIFEST_FORMAT = "anonymixer-rekey-manifest"
MANIFEST_VERSION = 1
MANIFEST_NAME = "rekey-manifest.json"
_FINGERPRINT = re.compile(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}")


def revoked_fingerprint(text: str) -> str:
    """The fingerprint of the revoked key, given as its key file or as the fingerprint itself."""
    if _FINGERPRINT.fullmatch(text.strip().lower()):
        return text.strip().lower()
    from .keys import load_key

    try:
        return load_key(text).fingerprint
    except KeyFileError as exc:
        raise AnonymixerError(f"--revoked: give the revoked key file or its fingerprint (xxxx-xxxx-xxxx-xxxx); "
                              f"{exc}") from None


def check_new_tree(out: Path, manifest_path: Path) -> None:
    """A re-key writes a new output tree: ``out`` must not exist, or be an empty folder (an
    interrupted re-key there is finished with ``--resume``)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        hint = ""
        try:
            if json.loads(manifest_path.read_text(encoding="utf-8")).get("complete") is False:
                hint = f"; {manifest_path} is an interrupted re-key: add --resume to finish it"
        except (OSError, ValueError, AttributeError):
            pass
        raise AnonymixerError(f"{out}: a re-key writes a new output tree; choose a folder that does not exist "
                              f"or is empty (keep the old tree until the new one is checked){hint}")


def input_digests(sources: list[Source]) -> dict[str, str | None]:
    """SHA-256 of every original before it is protected (``None``: it cannot be read)."""
    digests: dict[str, str | None] = {}
    for source in sources:
        try:
            digests[str(source)] = sha256_file(str(source.location))
        except OSError:
            digests[str(source)] = None
    return digests


def settings_of(args: Any) -> dict[str, Any]:
    """What a resumed run must share with the run it finishes (the salt as a fingerprint only)."""
    import hashlib

    from .keys import resolve_salt

    salt = hashlib.sha256(b"anonymixer/salt-fingerprint/v1\0" + resolve_salt(getattr(args, "salt", None)))
    return {"model": getattr(args, "model", None), "onnx": getattr(args, "onnx", None),
            "engines": getattr(args, "engines", None), "precision": getattr(args, "precision", None),
            "resolution": getattr(args, "resolution", None), "salt": salt.hexdigest()[:16]}


def check_manifest_path(path: Path, sources: list[Source], out: Path) -> None:
    """Refuse a ``--manifest`` path before any work: an input (by real path or file identity), the
    output of an input, a folder, or a place that cannot be written (one line, ``OutputError``)."""
    from .atomic import discard, new_temporary
    from .face.outputs import OutputPlan

    if path.is_dir():
        raise OutputError(f"--manifest {path}: is a folder; give the path of the manifest file to write")
    owner = OutputPlan(path.parent, [str(s.location) for s in sources if not s.live]).overwritten_input(path)
    if owner is not None:
        raise OutputError(f"--manifest {path}: would overwrite the original {owner}; inputs are never "
                          "overwritten: choose another path")
    outputs = {os.path.realpath(out / s.output): str(s) for s in sources}
    if os.path.realpath(path) in outputs:
        raise OutputError(f"--manifest {path}: is where the output of {outputs[os.path.realpath(path)]} goes; "
                          "choose another path")
    try:
        discard(new_temporary(path))   # a read-only folder, or a file in the way, fails now
    except OutputError as exc:
        problem = str(exc).removeprefix(f"{path}: ")
        raise OutputError(f"--manifest {path}: {problem}") from None


def read_previous(path: Path, revoked: str, new: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``--resume``: the manifest at ``path``, checked to belong to this job (same keys and settings)."""
    how = "run without --resume into a new --out folder"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnonymixerError(f"--resume: {path} does not exist; there is no re-key to resume there ({how})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnonymixerError(f"--resume: {path} is not readable ({type(exc).__name__}); {how}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), list):
        raise AnonymixerError(f"--resume: {path} is not a re-key manifest; {how}")
    if (data.get("revoked_key"), data.get("new_key")) != (revoked, new):
        raise AnonymixerError(f"--resume: {path} re-keys {data.get('revoked_key')} -> {data.get('new_key')}, "
                              f"not {revoked} -> {new}; give the same --revoked and --key, or {how}")
    changed = sorted(name for name, value in settings.items() if (data.get("settings") or {}).get(name) != value)
    if changed:
        raise AnonymixerError(f"--resume: {path} was made with other {', '.join(changed)}; resume with the "
                              f"settings of that run, or {how}")
    return data


def standing_entries(previous: dict[str, Any], sources: list[Source],
                     digests: dict[str, str | None]) -> list[dict[str, Any]]:
    """The entries of a previous run that stand (``still_valid``), for originals of this job."""
    by_input = {str(entry.get("input")): entry for entry in previous["files"] if isinstance(entry, dict)}
    return [by_input[str(s)] for s in sources if still_valid(by_input.get(str(s)), digests.get(str(s)))]


def still_valid(entry: dict[str, Any] | None, digest: str | None) -> bool:
    """Whether a previous run's entry for an original stands: protected, the original unchanged,
    and its output still there with the recorded sha256."""
    if entry is None or digest is None or entry.get("status") != "protected" or entry.get("input_sha256") != digest:
        return False
    output = entry.get("output")
    try:
        return isinstance(output, str) and sha256_file(output) == entry.get("output_sha256")
    except OSError:
        return False


def manifest(report: RunReport, digests: dict[str, str | None], sources: list[Source], *, revoked: str, new: str,
             model: str, settings: dict[str, Any], kept: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The manifest of a re-key run (see the module docstring); ``kept``: entries of a resumed run
    that stand, ``sources``: every original of the job."""
    from . import __version__
    from .face.app import signal_name

    files = list(kept)
    for outcome in report.outcomes:
        output = outcome.output if outcome.output is not None and outcome.output.is_file() else None
        entry: dict[str, Any] = {
            "input": str(outcome.source), "input_sha256": digests.get(str(outcome.source)),
            "output": None if output is None else str(output),
            "output_sha256": None if output is None else sha256_file(output),
            "status": "failed" if outcome.failed or output is None else "protected"}
        if outcome.problems:
            entry["problems"] = list(outcome.problems)
        files.append(entry)
    order = {str(source): index for index, source in enumerate(sources)}
    files.sort(key=lambda entry: order.get(entry["input"], len(order)))
    done = {entry["input"] for entry in files}
    not_done = [str(source) for source in sources if str(source) not in done]
    protected = sum(entry["status"] == "protected" for entry in files)
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "anonymixer": __version__,
            "model": model, "revoked_key": revoked, "new_key": new, "settings": settings,
            "complete": report.interrupted is None and not not_done,
            "interrupted_by": None if report.interrupted is None else signal_name(report.interrupted),
            "inputs": len(sources), "protected": protected, "failed": len(files) - protected,
            "not_done": len(not_done), "files": files, "not_done_inputs": not_done}


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write the manifest atomically (a reader never sees half of it)."""
    write_json(path, data, indent=2)
