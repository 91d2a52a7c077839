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
     "inputs": 32, "protected": 29, "failed": 3,
     "files": [{"input": "archive/a.jpg", "input_sha256": "...", "output": "new/a.jpg",
                "output_sha256": "...", "status": "protected"},
               {"input": "archive/bad.jpg", "input_sha256": "...", "output": null,
                "output_sha256": null, "status": "failed", "problems": ["archive/bad.jpg: ..."]}]}

``status`` is ``failed`` when nothing usable was written (unreadable input, unwritable output) or
a face had to be masked (fail closed: the output exists but is not a faithful protection); such
inputs need attention before the old tree is deleted.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from .digest import sha256_file
from .errors import AnonymixerError, KeyFileError
from .face.app import RunReport
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


def check_new_tree(out: Path) -> None:
    """A re-key writes a new output tree: ``out`` must not exist, or be an empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AnonymixerError(f"{out}: a re-key writes a new output tree; choose a folder that does not exist "
                              "or is empty (keep the old tree until the new one is checked)")


def input_digests(sources: list[Source]) -> dict[str, str | None]:
    """SHA-256 of every original before it is protected (``None``: it cannot be read)."""
    digests: dict[str, str | None] = {}
    for source in sources:
        try:
            digests[str(source)] = sha256_file(str(source.location))
        except OSError:
            digests[str(source)] = None
    return digests


def manifest(report: RunReport, digests: dict[str, str | None], *, revoked: str, new: str,
             model: str) -> dict[str, Any]:
    """The manifest of a finished re-key run (see the module docstring)."""
    from . import __version__

    files = []
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
    protected = sum(entry["status"] == "protected" for entry in files)
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "anonymixer": __version__,
            "model": model, "revoked_key": revoked, "new_key": new,
            "inputs": len(files), "protected": protected, "failed": len(files) - protected, "files": files}


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write the manifest atomically (a reader never sees half of it)."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
