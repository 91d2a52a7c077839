"""Which of the key's draws a face gets: the artefact guard, then the identity check; in video, once per track.

A key gives each face four deterministic draws (``guard.redraw_feeds``): draw 0, the key's own, and
draws 1-3, the code reflected about the model's mean in three ways; faces64 eight (draws 4-7: draws
0-3 steered, ``guard.faces64_steer``: the person's head turn kept, lit evenly, well exposed, the mouth
no wider open than on the average face), and for faces64 those four are tried first
(``DrawChooser.order``: 4-7, then 0-3).
``DrawChooser.paste`` picks one:

1. **Artefact guard** (``face.guard``): the first draw, in order, that the guard takes for
   a face turned as the person is, as drawn (YuNet, cheeks, head turn) and pasted (``guard.split``);
   if none, every draw is pasted once and the one it rejects least is kept.
2. **Identity check** (``face.identity``): that draw is pasted and the recogniser compares the output
   with the original; while it is too close, the other draws are pasted instead, then the guard's
   draw without the original's colours; if every one is too close, the face is masked (the caller's
   fail-closed fill).

**Video.** A face followed by a track (``Face.track``) keeps the draw chosen on the track's first
frame: the following frames paste that draw with no guard and no recogniser, so a person's face does
not switch draws from frame to frame and the per-frame cost is the paste alone. The identity check
runs again on every ``RECHECK_FRAMES``-th frame of the track (the chosen draw first: it is kept
while it passes) and on a new track (a face lost for longer than the track holds it comes back as
one). A track whose every draw was too close stays masked until its next check. Photos (no track)
are decided on their own. A live source's re-checks (``paste(live=True)``) go to ``background``
(``identity.BackgroundCheck``, a process of its own: dlib holds Python's GIL for a whole check, which
froze a camera's capture) while the track's frames go on with its draw; one that finds the face too
close, or fails, makes the track's next frame choose afresh, in line. A file's stay in line (the same
output bytes every run).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from ..runtime.protector import Protector
from .guard import ArtefactGuard, Verdict, has_head_turn_draws, redraw_feeds
from .identity import BackgroundCheck, IdentityCheck, Windows
from .paste import PasteRegion, PasteStyle

RECHECK_FRAMES = 30    # a track's draw is checked by the recogniser again every this many frames
MAX_TRACKS = 512       # decisions kept (the oldest are forgotten: such a track is decided afresh)
MASKED = -1            # the draw of a track whose every draw was too close


@dataclass
class Decision:
    """A track's draw (``MASKED``: none passed; ``reason`` says why), whether it takes the original's
    colours, and the frames since it was checked."""

    draw: int
    colour: bool = True
    age: int = 0
    reason: str = ""


PasteOne = Callable[[np.ndarray, PasteStyle], PasteRegion]


class DrawChooser:
    """Chooses and pastes the draw of each face (module doc). ``guard``/``identity``: None to skip."""

    def __init__(self, protector: Protector, style: PasteStyle, guard: ArtefactGuard | None,
                 identity: IdentityCheck | None, recheck_frames: int = RECHECK_FRAMES) -> None:
        self.protector, self.style, self.guard, self.identity = protector, style, guard, identity
        self.recheck_frames = recheck_frames
        self._feeds: list[dict[str, np.ndarray]] | None = None
        # faces64 tries the draws that keep the person's head turn first (``order``), only with the guard
        self._pose_first = guard is not None and has_head_turn_draws(protector.info)
        self._tracks: OrderedDict[int, Decision] = OrderedDict()
        self._lock = threading.Lock()   # ``planned`` runs on the networks' thread, ``paste`` on paste-back's
        # live sources' re-checks, in a process of their own (``FaceProtector.process_many(live=True)``)
        self.background: BackgroundCheck | None = None

    def feeds(self, draw: int) -> dict[str, np.ndarray] | None:
        """The mixer feeds of ``draw`` (None: the key's own)."""
        if draw == 0:
            return None
        return self._redraws()[draw - 1]

    def _redraws(self) -> list[dict[str, np.ndarray]]:
        if self._feeds is None:
            self._feeds = redraw_feeds(self.protector)
        return self._feeds

    @property
    def count(self) -> int:
        """How many draws a key gives a face: its own and ``guard.redraw_feeds``'s (4; faces64: 8)."""
        return 1 + len(self._redraws())

    @property
    def order(self) -> list[int]:
        """The draws in the order they are tried: 0-3; faces64 (eight draws) 4-7 first, the key's draws
        steered (``guard.steered``: the person's head turn kept; lighting, brightness, the guard's miss and
        the mouth set), then 0-3. faces64 draws a new head pose, lighting and exposure with the identity
        (one code for the whole face); a face turned away from the way the person faces shows its own
        cheek's edge, hair or background down one side of the person's outline, one lit from the side a
        split, a dark one a blob. Judged blind (session 10, docs/pasteback.md): 24 of 80 protected faces
        broken with session 8's draws 4-7 (the head turn kept only), 9 of 80 steered; on a second sheet,
        11 of 80 steered against 7 with the mouth set too. Without the guard
        (``PasteStyle.guard`` off: the ablation) the key's own draw comes first."""
        count = self.count
        return [*range(4, count), *range(4)] if self._pose_first and count > 4 else list(range(count))

    @property
    def first(self) -> int:
        """The draw tried first (``order``): generated with the networks' batch, before any choice. The
        other draws' feeds are made only for faces64 (whose first draw is one of them) or when the first
        is not enough."""
        return self.order[0] if self._pose_first else 0

    def _in_order(self) -> Iterator[int]:
        """``order``, lazily: the first draw, then (their feeds made only now) the others."""
        first = self.first
        yield first
        yield from (d for d in self.order if d != first)

    def planned(self, track: int | None) -> int:
        """The draw to generate for a face of ``track``: the track's, else ``first``."""
        with self._lock:
            decision = self._tracks.get(track) if track is not None else None
        return decision.draw if decision is not None and decision.draw >= 0 else self.first

    def _remember(self, track: int | None, decision: Decision) -> None:
        if track is None:
            return
        with self._lock:
            self._tracks[track] = decision
            self._tracks.move_to_end(track)
            while len(self._tracks) > MAX_TRACKS:
                self._tracks.popitem(last=False)

    def paste(self, crop: np.ndarray, generated: tuple[int, np.ndarray], track: int | None, paste_one: PasteOne,
              verify: Callable[[], float], restore: Callable[[], None], label: str,
              notes: list[str], timings: dict[str, float],
              person_turn: float | None = None, live: bool = False,
              windows: Callable[[], Windows] | None = None) -> tuple[PasteRegion, bool]:
        """Paste one face's chosen draw; ``(region, drawn again)``, or raise when it must be masked.

        ``crop``: the aligned face ``(S, S, 3) uint8 RGB``; ``generated``: ``(draw, (R, R, 3) uint8 RGB)``
        already generated for it; ``paste_one(face, style)`` pastes a draw into the output,
        ``verify()`` measures the output against the original (``IdentityCheck.measure``) and
        ``restore()`` undoes the paste. ``notes`` gets a line when the guard or the check turned a draw
        down (then "drawn again" is True); ``timings`` the ms of the ``guard`` stage (YuNet, the draws
        generated for it) and of the ``identity`` stage (the recogniser, the draws generated for it),
        without the pastes themselves (``paste_one``: the caller's paste-back stage). ``person_turn``:
        the original face's ``guard.head_turn`` (None: the guard does not compare head turns). ``live``: a
        live source's frame, whose track's re-check goes to ``background`` (``windows()``: what it reads of
        the frame and the output, ``identity.windows``) instead of holding the frame up."""
        self._take_background(notes)
        with self._lock:
            decision = self._tracks.get(track) if track is not None else None
        drawn, noted = {generated[0]: generated[1]}, len(notes)
        pasting = [0.0]   # ms spent in paste_one

        def paste_timed(face: np.ndarray, style: PasteStyle) -> PasteRegion:
            started = time.perf_counter()
            try:
                return paste_one(face, style)
            finally:
                pasting[0] += (time.perf_counter() - started) * 1000.0

        def stage(name: str, started: float) -> None:
            timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000.0 - pasting[0]
            pasting[0] = 0.0

        code: list[np.ndarray] = []   # the crop's code, encoded once for all the draws asked for

        def draw(d: int) -> np.ndarray:
            if d not in drawn:
                if not code:
                    code.append(self.protector.encode(crop[None]))
                drawn[d] = self.protector.render(code[0], self.feeds(d))[0]
            return drawn[d]

        background = self.background
        if (live and decision is not None and decision.draw != MASKED and self.identity is not None
                and decision.age + 1 >= self.recheck_frames and windows is not None
                and background is not None and background.alive):
            # a live track's re-check: its draw is pasted, and checked beside the pipeline (``_take_background``)
            region = paste_one(draw(decision.draw), replace(self.style, colour=decision.colour))
            if background.submit(track, windows()):
                decision.age = 0
            return region, False   # a check still in flight: the next frame of the track submits again
        if decision is not None and (self.identity is None or decision.age + 1 < self.recheck_frames):
            decision.age += 1   # decided on an earlier frame of the track: the same draw, unchecked
            if decision.draw == MASKED:
                raise RuntimeError(decision.reason)
            return paste_one(draw(decision.draw), replace(self.style, colour=decision.colour)), False
        t = time.perf_counter()
        verdicts: dict[int, Verdict] = {}
        if decision is None or decision.draw == MASKED:
            first, region = self._guarded(draw, paste_timed, restore, label, notes, verdicts, person_turn)
        else:   # a re-check: the track keeps its draw while it passes
            first = Decision(decision.draw, decision.colour)
            region = paste_timed(draw(first.draw), replace(self.style, colour=first.colour))
        stage("guard", t)
        if self.identity is None:
            self._remember(track, first)
            return region, len(notes) > noted
        t = time.perf_counter()
        try:
            chosen, region = self._identity_checked(first, region, draw, verdicts, paste_timed, verify, restore, label,
                                                    notes, person_turn)
        except RuntimeError as exc:
            self._remember(track, Decision(MASKED, reason=str(exc)))
            raise
        finally:
            stage("identity", t)
        self._remember(track, chosen)
        return region, len(notes) > noted

    def _take_background(self, notes: list[str]) -> None:
        """The re-check that finished beside the pipeline, if any: a track whose protected face the
        recogniser still takes for the original (or whose check failed) forgets its draw, so its next
        frame chooses afresh, guard and identity check in line, as a new track does."""
        if self.background is None or self.identity is None:
            return
        done = self.background.poll()
        if done is None:
            return
        track, measure = done
        if measure is not None and self.identity.margin(measure) >= 0.0:
            return
        if isinstance(track, int):
            with self._lock:
                self._tracks.pop(track, None)
        found = "failed" if measure is None else f"found it too close ({self.identity.describe_measure(measure)})"
        notes.append(f"a tracked face's re-check beside the pipeline {found}: its next frame chooses its draw afresh")

    def _guarded(self, draw: Callable[[int], np.ndarray], paste_one: PasteOne, restore: Callable[[], None],
                 label: str, notes: list[str], verdicts: dict[int, Verdict],
                 person_turn: float | None) -> tuple[Decision, PasteRegion]:
        """Paste the first draw (``order``) the artefact guard passes, else the one it rejects least:
        YuNet on the generated face, then, pasted, how even its two sides are (``guard.split``)."""
        first = self.first
        if self.guard is None:
            return Decision(first), paste_one(draw(first), self.style)
        region: PasteRegion | None = None
        pasted = -1

        def paste(d: int) -> PasteRegion:
            nonlocal region, pasted
            if region is not None:
                restore()
            region, pasted = paste_one(draw(d), self.style), d
            verdicts[d] = replace(verdicts[d], split=region.split)
            return region

        for d in self._in_order():
            verdicts[d] = self.guard.check(draw(d), person_turn)
            if verdicts[d].passed:   # a face, as drawn: is it an even one, pasted?
                paste(d)
            if verdicts[d].passed:
                break
        else:   # none passed: every draw is pasted once, so that the nearest is judged on all the limits
            for d in self.order:
                if verdicts[d].split is None:
                    paste(d)
        in_order = list(verdicts)   # as tried
        best = min(in_order, key=lambda d: (verdicts[d].shortfall, in_order.index(d)))
        if best != pasted:
            paste(best)
        assert region is not None
        if best != first or not verdicts[first].passed:
            tried = len(verdicts) - 1
            outcome = (f"draw {best} of the key's others passed" if verdicts[best].passed else
                       f"none of the key's {tried} other draws passed; kept the nearest")
            notes.append(f"{label}: the generated face failed the artefact guard ({verdicts[first].describe()}); "
                         f"{outcome} ({verdicts[best].describe()})")
        return Decision(best), region

    def _identity_checked(self, first: Decision, region: PasteRegion, draw: Callable[[int], np.ndarray],
                          verdicts: dict[int, Verdict], paste_one: PasteOne, verify: Callable[[], float],
                          restore: Callable[[], None], label: str, notes: list[str],
                          person_turn: float | None = None) -> tuple[Decision, PasteRegion]:
        """``first`` is pasted (``region``); while the recogniser still takes it for the original, the
        key's other draws that the guard passes (``verdicts``: its verdicts so far), then ``first``'s
        draw with the other colour choice, then the draws the guard turned down, least rejected first.
        Raise if all are too close."""
        assert self.identity is not None

        def tries() -> Iterator[Decision]:
            yield first
            order = self.order
            others = [d for d in order if d != first.draw]
            if self.guard is not None:
                for d in others:
                    if d not in verdicts:
                        verdicts[d] = self.guard.check(draw(d), person_turn)
                others.sort(key=lambda d: (verdicts[d].shortfall, order.index(d)))
            good = [d for d in others if self.guard is None or verdicts[d].passed]
            yield from (Decision(d) for d in good)
            yield Decision(first.draw, not first.colour)
            yield from (Decision(d) for d in others if d not in good)

        measures: list[float] = []
        for n, chosen in enumerate(tries()):
            if n:
                restore()
                region = paste_one(draw(chosen.draw), replace(self.style, colour=chosen.colour))
            measures.append(verify())
            if self.identity.margin(measures[-1]) >= 0.0:
                break
        else:
            raise RuntimeError(f"the protected face stays too close to the original under the identity check "
                               f"({self.identity.describe()}) in all {len(measures)} draws "
                               f"(nearest: {self.identity.describe_measure(max(measures, key=self.identity.margin))})")
        if len(measures) > 1:
            how = f"draw {chosen.draw}" + ("" if chosen.colour else " without the original's colours")
            notes.append(f"{label}: the protected face was too close to its original "
                         f"({self.identity.describe_measure(measures[0])}); {how}: "
                         f"{self.identity.describe_measure(measures[-1])}")
        return chosen, region
