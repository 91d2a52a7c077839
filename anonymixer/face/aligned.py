"""Protect pre-aligned face crops (files in, files out), going on past bad files.

Outputs mirror the inputs' paths below their folders (like whole-frame mode), are written
atomically, and never land on an input or on another output of the run (``OutputPlan``).
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import AnonymixerError, InputImageError, printable
from ..runtime.protector import Protector
from .runreport import Outcome
from .io import read_image, write_image
from .outputs import OutputPlan
from .sources import Source


@dataclass
class ProtectReport:
    """What a batch run did: outputs written, one line per input that failed, notes.
    ``replaced``: outputs of an earlier run replaced; ``interrupted``: the signal number that
    stopped the run (2 SIGINT, 15 SIGTERM), else ``None``."""

    written: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    replaced: int = 0
    interrupted: int | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    def fail(self, line: str, source: Source | None = None) -> None:
        """One failed input, one line (and its ``outcomes`` entry when its ``source`` is known)."""
        self.failures.append(line)
        if source is not None:
            self.outcomes.append(Outcome(source, None, True, (line,)))

    def summary(self) -> str:
        """The report for the terminal; control characters of file names are escaped (``printable``)."""
        total = len(self.written) + len(self.failures)
        replaced = f" ({self.replaced} replaced an earlier file)" if self.replaced else ""
        lines = [f"protected {len(self.written)} of {total} face(s) in {self.seconds:.1f} s{replaced}"]
        if self.stage_ms and self.written:
            per_face = ", ".join(f"{k} {v / len(self.written):.1f} ms" for k, v in self.stage_ms.items())
            lines.append(f"per face: {per_face}")
        lines.extend(f"note: {printable(line)}" for line in self.notes)
        if self.failures:
            lines.append(f"{len(self.failures)} input(s) failed:")
            lines.extend(f"  {printable(line)}" for line in self.failures)
        return "\n".join(lines)


@dataclass
class _Crop:
    """One readable input: its name, where its output goes, the crop ``(size, size, 3) uint8 RGB``."""

    source: Source
    target: Path
    face: np.ndarray

    @property
    def name(self) -> str:
        return str(self.source)


def read_aligned_face(path: Path, size: int) -> np.ndarray:
    """An aligned crop as ``(size, size, 3) uint8 RGB``; one-line ``InputImageError`` otherwise."""
    image = read_image(path)
    if image.ndim == 2 or image.shape[2] == 1:
        raise InputImageError(f"{path}: grayscale image; aligned face crops must be colour (RGB)")
    if image.shape[2] == 4:
        raise InputImageError(f"{path}: image has an alpha channel; save aligned crops as 3-channel RGB")
    if image.shape[:2] != (size, size):
        raise InputImageError(f"{path}: aligned crops must be {size}x{size}, this one is "
                              f"{image.shape[1]}x{image.shape[0]}; run without --aligned to detect and align")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def protect_aligned_files(protector: Protector, sources: list[Source], out_dir: Path,
                          batch_size: int = 8, inflight: int = 1) -> ProtectReport:
    """Protect each crop in ``sources`` and write it to ``out_dir`` at ``source.output``, at crop size.

    ``inflight`` > 1 keeps that many batches in the Protector's pipeline at once
    (``Protector.protect_many``); a backend failure then fails the batches not yet written.
    Ctrl-C or SIGTERM stops the run (``report.interrupted``); no partial file is left.
    """
    report = ProtectReport()
    plan = OutputPlan(out_dir, [str(s.location) for s in sources])
    start = time.perf_counter()
    try:
        with tqdm(total=len(sources), unit="face", desc="protect", disable=None) as bar:
            batches = _read_batches(sources, plan, protector.input_size, batch_size, report, bar)
            if inflight == 1:
                for batch in batches:
                    try:
                        protected = protector.protect(np.stack([crop.face for crop in batch]))
                    except AnonymixerError as exc:
                        _fail(batch, exc, report, bar)
                        continue
                    _write_batch(protector, batch, protected, report, bar)
            else:
                _protect_in_flight(protector, batches, inflight, report, bar)
    except KeyboardInterrupt as exc:
        report.interrupted = getattr(exc, "signal_number", signal.SIGINT.value)
        done = len(report.written) + len(report.failures)
        report.notes.append(f"interrupted by {signal.Signals(report.interrupted).name}: "
                            f"{len(sources) - done} input(s) not processed")
    report.seconds = time.perf_counter() - start
    return report


def _protect_in_flight(protector: Protector, batches: Iterator[list[_Crop]], inflight: int,
                       report: ProtectReport, bar: tqdm) -> None:
    pending: deque[list[_Crop]] = deque()

    def stacked() -> Iterator[np.ndarray]:
        for batch in batches:
            pending.append(batch)
            yield np.stack([crop.face for crop in batch])

    try:
        for protected in protector.protect_many(stacked(), inflight=inflight):
            _write_batch(protector, pending.popleft(), protected, report, bar)
    except AnonymixerError as exc:
        for batch in [*pending, *batches]:
            _fail(batch, exc, report, bar)


def _read_batches(sources: list[Source], plan: OutputPlan, size: int, batch_size: int, report: ProtectReport,
                  bar: tqdm) -> Iterator[list[_Crop]]:
    """Readable crops in batches of up to ``batch_size``; unusable inputs go to ``report.failures``."""
    batch: list[_Crop] = []
    for source in sources:
        try:
            if source.kind != "image":
                raise InputImageError(f"{source}: a {source.kind}; --aligned protects aligned face images only")
            target = plan.claim(source.output, str(source))
            batch.append(_Crop(source, target, read_aligned_face(Path(str(source.location)), size)))
        except AnonymixerError as exc:
            report.fail(str(exc), source)
            bar.update(1)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fail(batch: list[_Crop], exc: AnonymixerError, report: ProtectReport, bar: tqdm) -> None:
    for crop in batch:
        report.fail(f"{crop.name}: protection failed: {exc}", crop.source)
    bar.update(len(batch))


def _write_batch(protector: Protector, batch: list[_Crop], protected: np.ndarray,
                 report: ProtectReport, bar: tqdm) -> None:
    size = protector.input_size
    for stage, ms in protector.last_timings_ms.items():
        report.stage_ms[stage] = report.stage_ms.get(stage, 0.0) + ms
    per_face = {stage: ms / len(batch) for stage, ms in protector.last_timings_ms.items()}
    for crop, face in zip(batch, protected):
        if face.shape[0] != size:
            face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA
                              if face.shape[0] > size else cv2.INTER_CUBIC)
        try:
            replaces = crop.target.is_file()
            write_image(crop.target, cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
            report.written.append(crop.target)
            report.replaced += replaces
            report.outcomes.append(Outcome(crop.source, crop.target, False, frames=1, faces=1, stage_ms=per_face))
        except AnonymixerError as exc:
            report.fail(f"{exc}", crop.source)
        bar.update(1)
