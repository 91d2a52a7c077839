"""``OUT/report.json``: the record of one ``anonymixer protect`` run, for scripts and audits.

Written atomically when the run ends (also after Ctrl-C, then with ``"complete": false``), and
printed by ``protect --json``. Its JSON Schema is ``anonymixer/schemas/report.json``::

    {"format": "anonymixer-protect-report", "version": 1, "created": "2026-12-06T03:00:00Z",
     "complete": true, "model": "faces64 ...", "key_fingerprint": "3f2a-...", "backend": "torch (cpu)",
     "detector": "yunet", "no_face": "pass", "versions": {"python": ..., "anonymixer": ..., "numpy": ...},
     "inputs": 3, "protected": 1, "no_face_found": 1, "failed": 1, "not_processed": 0,
     "frames": 3, "faces": 1, "masked": 0, "seconds": 1.2, "stage_ms": {"detect": ..., ...},
     "files": [{"input": "in/a.jpg", "kind": "image", "status": "protected", "frames": 1, "faces": 1,
                "masked": 0, "output": "out/a.jpg", "output_sha256": "...", "reasons": [],
                "stage_ms": {"detect": 31.0, ...}}, ...],
     "notes": ["..."]}

Per input, ``status`` is ``protected`` (every face found was protected), ``no-face`` (none was
found: the output is the input unchanged, or masked whole with ``--no-face mask``), ``failed``
(unreadable, a face masked because its protection failed, nothing or nothing usable written: see
``reasons``) or ``not-processed`` (the run was interrupted first). ``stage_ms`` is wall time per
stage summed over the input's frames; with several inputs in flight, stages of different inputs
overlap. The key is named by its fingerprint only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..digest import sha256_file
from .runreport import Outcome
from .sources import Source

REPORT_FORMAT = "anonymixer-protect-report"
REPORT_VERSION = 1
REPORT_NAME = "report.json"
# Software whose version is recorded (besides Python, the platform and anonymixer).
RECORDED_DISTRIBUTIONS = ("numpy", "opencv-python-headless", "opencv-python", "torch", "onnxruntime",
                          "onnxruntime-gpu", "tensorrt", "cuda-python", "pillow")


@dataclass(frozen=True)
class Setup:
    """What a run opened (a single process, or each Ray actor): the header lines it prints, and
    the run's part of ``report.json``. ``detector``: ``None`` for aligned crops."""

    model: str
    fingerprint: str
    backend: str
    detector: str | None
    is_random: bool


def status(outcome: Outcome) -> str:
    """``protected``, ``no-face`` or ``failed`` (see the module docstring)."""
    if outcome.failed or outcome.output is None:
        return "failed"
    return "protected" if outcome.faces else "no-face"


def file_entry(outcome: Outcome) -> dict[str, Any]:
    """One input's entry of ``files``; the output's SHA-256 is of the file as it is now."""
    output = outcome.output if outcome.output is not None and outcome.output.is_file() else None
    return {"input": str(outcome.source), "kind": outcome.source.kind, "status": status(outcome),
            "frames": outcome.frames, "faces": outcome.faces, "masked": outcome.masked,
            "output": None if output is None else str(output),
            "output_sha256": None if output is None else sha256_file(output),
            "reasons": [*outcome.problems, *outcome.notes], "stage_ms": {k: round(v, 3) for k, v in outcome.stage_ms.items()}}


def run_record(outcomes: Sequence[Outcome], sources: Sequence[Source], setup: Setup, *, no_face: str | None,
               seconds: float, complete: bool, notes: Sequence[str] = (), failures: Sequence[str] = ()) -> dict[str, Any]:
    """The report of a run: one ``files`` entry per source, in input order (an input the run did
    not reach is ``not-processed``), the totals, and the run's model, key fingerprint and versions.
    ``failures``: the run's failure lines that belong to no input of ``sources`` (an input folder
    with nothing in it)."""
    from ..provenance import versions

    by_input = {str(outcome.source): outcome for outcome in outcomes}
    files: list[dict[str, Any]] = []
    for source in sources:
        outcome = by_input.get(str(source))
        if outcome is None:
            files.append({"input": str(source), "kind": source.kind, "status": "not-processed", "frames": 0,
                          "faces": 0, "masked": 0, "output": None, "output_sha256": None, "reasons": [],
                          "stage_ms": {}})
        else:
            files.append(file_entry(outcome))
    stage_ms: dict[str, float] = {}
    for outcome in outcomes:
        for stage, ms in outcome.stage_ms.items():
            stage_ms[stage] = stage_ms.get(stage, 0.0) + ms
    count = {name: sum(entry["status"] == name for entry in files)
             for name in ("protected", "no-face", "failed", "not-processed")}
    return {"format": REPORT_FORMAT, "version": REPORT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "complete": complete,
            "model": setup.model, "key_fingerprint": setup.fingerprint, "backend": setup.backend,
            "detector": setup.detector,
            "no_face": no_face, "versions": versions(RECORDED_DISTRIBUTIONS),
            "inputs": len(files), "protected": count["protected"], "no_face_found": count["no-face"],
            "failed": count["failed"], "not_processed": count["not-processed"],
            "frames": sum(entry["frames"] for entry in files), "faces": sum(entry["faces"] for entry in files),
            "masked": sum(entry["masked"] for entry in files), "seconds": round(seconds, 3),
            "stage_ms": {k: round(v, 3) for k, v in stage_ms.items()}, "files": files, "notes": list(notes),
            "failures": [line for line in failures if not any(line in entry["reasons"] for entry in files)]}


def write_record(out_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``OUT/report.json`` atomically; its path."""
    path = out_dir / REPORT_NAME
    write_json(path, record, indent=1)
    return path
