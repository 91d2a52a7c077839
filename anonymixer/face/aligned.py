"""Protect pre-aligned face crops (files in, files out), going on past bad files."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import AnonymixerError, InputImageError
from ..runtime.protector import Protector
from .io import read_image, write_image


@dataclass
class ProtectReport:
    """What a batch run did: outputs written, and one line per input that failed."""

    written: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        total = len(self.written) + len(self.failures)
        lines = [f"protected {len(self.written)} of {total} face(s) in {self.seconds:.1f} s"]
        if self.stage_ms and self.written:
            per_face = ", ".join(f"{k} {v / len(self.written):.1f} ms" for k, v in self.stage_ms.items())
            lines.append(f"per face: {per_face}")
        if self.failures:
            lines.append(f"{len(self.failures)} input(s) failed:")
            lines.extend(f"  {line}" for line in self.failures)
        return "\n".join(lines)


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


def protect_aligned_files(protector: Protector, paths: list[Path], out_dir: Path,
                          batch_size: int = 8, inflight: int = 1) -> ProtectReport:
    """Protect each crop in ``paths`` and write it to ``out_dir`` under the same name, at crop size.

    ``inflight`` > 1 keeps that many batches in the Protector's pipeline at once
    (``Protector.protect_many``); a backend failure then fails the batches not yet written.
    """
    report = ProtectReport()
    size = protector.input_size
    start = time.perf_counter()
    with tqdm(total=len(paths), unit="face", desc="protect", disable=None) as bar:
        batches = _read_batches(paths, size, batch_size, report, bar)
        if inflight == 1:
            for batch in batches:
                try:
                    protected = protector.protect(np.stack([face for _, face in batch]))
                except AnonymixerError as exc:
                    _fail(batch, exc, report, bar)
                    continue
                _write_batch(protector, batch, protected, out_dir, report, bar)
        else:
            pending: deque[list[tuple[Path, np.ndarray]]] = deque()

            def stacked() -> Iterator[np.ndarray]:
                for batch in batches:
                    pending.append(batch)
                    yield np.stack([face for _, face in batch])

            try:
                for protected in protector.protect_many(stacked(), inflight=inflight):
                    _write_batch(protector, pending.popleft(), protected, out_dir, report, bar)
            except AnonymixerError as exc:
                for batch in [*pending, *batches]:
                    _fail(batch, exc, report, bar)
    report.seconds = time.perf_counter() - start
    return report


def _read_batches(paths: list[Path], size: int, batch_size: int, report: ProtectReport,
                  bar: tqdm) -> Iterator[list[tuple[Path, np.ndarray]]]:
    """Readable crops in batches of up to ``batch_size``; unreadable ones go to ``report.failures``."""
    for i in range(0, len(paths), batch_size):
        batch: list[tuple[Path, np.ndarray]] = []
        for path in paths[i:i + batch_size]:
            try:
                batch.append((path, read_aligned_face(path, size)))
            except AnonymixerError as exc:
                report.failures.append(str(exc))
                bar.update(1)
        if batch:
            yield batch


def _fail(batch: list[tuple[Path, np.ndarray]], exc: AnonymixerError, report: ProtectReport, bar: tqdm) -> None:
    report.failures.extend(f"{path}: protection failed: {exc}" for path, _ in batch)
    bar.update(len(batch))


def _write_batch(protector: Protector, batch: list[tuple[Path, np.ndarray]], protected: np.ndarray,
                 out_dir: Path, report: ProtectReport, bar: tqdm) -> None:
    size = protector.input_size
    for stage, ms in protector.last_timings_ms.items():
        report.stage_ms[stage] = report.stage_ms.get(stage, 0.0) + ms
    for (path, _), face in zip(batch, protected):
        if face.shape[0] != size:
            face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA
                              if face.shape[0] > size else cv2.INTER_CUBIC)
        target = out_dir / path.name
        try:
            write_image(target, cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
            report.written.append(target)
        except (AnonymixerError, OSError) as exc:
            report.failures.append(f"{target}: cannot write output ({exc})")
        bar.update(1)
