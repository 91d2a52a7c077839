"""What a run did: one ``Outcome`` per input, and the ``RunReport`` of a whole run (printed by
``protect``, written as ``report.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import printable
from .pipeline import STAGES, FrameResult
from .sources import Source


@dataclass(frozen=True)
class Outcome:
    """What became of one input: its ``output`` (``None``: nothing written), whether it ``failed``
    (unreadable, a masked face, an unwritable output), the report lines about it (``problems``:
    failures, ``notes``: the rest), its ``frames``, ``faces`` protected and ``masked``, and the
    wall time of each stage summed over its frames (``stage_ms``)."""

    source: Source
    output: Path | None
    failed: bool
    problems: tuple[str, ...] = ()
    frames: int = 0
    faces: int = 0
    masked: int = 0
    notes: tuple[str, ...] = ()
    stage_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class RunReport:
    """What a run did. ``failures``: one line per failed input or masked face (capped per video);
    ``failed_inputs``: inputs with any failure; ``notes``: things worth knowing that are not
    failures (no face found). ``stage_ms``: wall time per stage, summed over ``frames``.
    ``replaced``: outputs of an earlier run replaced. ``interrupted``: the signal number that
    stopped the run (2 SIGINT, 15 SIGTERM), else ``None``."""

    written: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failed_inputs: int = 0
    notes: list[str] = field(default_factory=list)
    frames: int = 0
    faces: int = 0
    masked: int = 0
    seconds: float = 0.0
    replaced: int = 0
    interrupted: int | None = None
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    outcomes: list[Outcome] = field(default_factory=list)

    def merge(self, other: RunReport) -> None:
        """Append ``other`` (the report of later inputs) to this one; ``seconds`` is left alone."""
        self.written.extend(other.written)
        self.failures.extend(other.failures)
        self.failed_inputs += other.failed_inputs
        self.notes.extend(other.notes)
        self.frames += other.frames
        self.faces += other.faces
        self.masked += other.masked
        self.replaced += other.replaced
        for stage, ms in other.stage_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms
        self.outcomes.extend(other.outcomes)

    def fail(self, line: str) -> None:
        """One failed input, one line."""
        self.failures.append(line)
        self.failed_inputs += 1

    def add_frame(self, result: FrameResult) -> None:
        """Count one protected frame (photo or video frame) and its stage times."""
        self.frames += 1
        self.faces += result.protected
        self.masked += result.masked
        self.add_timings(result)

    def add_timings(self, result: FrameResult) -> None:
        for stage, ms in result.timings_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms

    def timing_line(self) -> str:
        """Mean wall time per frame of each stage, e.g. ``detect 41.0 ms, align 1.2 ms, ...``."""
        frames = max(self.frames, 1)
        return ", ".join(f"{stage} {ms / frames:.1f} ms" for stage, ms in self.stage_ms.items())

    def summary(self) -> str:
        """The report for the terminal; control characters of file names are escaped (``printable``)."""
        replaced = f" ({self.replaced} replaced an earlier file)" if self.replaced else ""
        lines = [f"{len(self.written)} output(s) written{replaced}: {self.frames} frame(s), {self.faces} face(s) "
                 f"protected, {self.masked} masked, in {self.seconds:.1f} s"]
        if self.frames:
            lines.append(f"per frame: {self.timing_line()}")
        lines.extend(f"note: {printable(line)}" for line in self.notes)
        if self.failures:
            lines.append(f"{self.failed_inputs} input(s) failed or had faces masked:")
            lines.extend(f"  {printable(line)}" for line in self.failures)
        return "\n".join(lines)
