"""Thresholds: the measured defaults a new store starts from, and calibration from impostor scores.

A threshold is a cosine between templates: a probe matches when ``score >= threshold``. It is set
for a target false match rate (FMR) from *impostor* scores (templates of different people), never
taken from a recogniser's stock threshold (those are for unprotected embeddings and another FMR).

``MEASURED`` holds the defaults, each at FMR 1e-3, produced by::

    python benchmarks/terminal_thresholds.py --out out/terminal_thresholds

on faces64's synthetic identities (``eval.synthetic.Scene``: enrolment faces of different codes
under one key; see ``benchmarks/RESULTS.md``, "Access terminal"). A deployment then runs
``anonymixer terminal calibrate`` on its own people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TerminalError
from ..eval.metrics import threshold_at_far

DEFAULT_FMR = 1e-3


@dataclass(frozen=True)
class MeasuredThreshold:
    """One row of the defaults: for templates of ``kind`` by ``recogniser`` from ``model`` ("*":
    any model, the ``embedding`` kind does not depend on it) in format ``template``."""

    kind: str
    recogniser: str
    model: str
    template: str
    fmr: float
    threshold: float
    impostor_pairs: int


MEASURED_COMMAND = "python benchmarks/terminal_thresholds.py"
MEASURED: tuple[MeasuredThreshold, ...] = (   # 1000 identities, 499,500 impostor pairs each
    MeasuredThreshold("embedding", "sface", "*", "embedding/v1 unit rank 64 cosine", 0.001, 0.5906, 499500),
    MeasuredThreshold("face", "sface", "faces64", "face/v1 cosine", 0.001, 0.8108, 499500),
    MeasuredThreshold("embedding", "dlib", "*", "embedding/v1 unit rank 64 cosine", 0.001, 0.9485, 499500),
    MeasuredThreshold("face", "dlib", "faces64", "face/v1 cosine", 0.001, 0.9793, 499500),
)


def measured_threshold(kind: str, recogniser: str, model: str, template: str,
                       fmr: float = DEFAULT_FMR) -> MeasuredThreshold | None:
    """The shipped default for these templates, or ``None`` if none was measured."""
    for row in MEASURED:
        if (row.kind, row.recogniser, row.template, row.fmr) == (kind, recogniser, template, fmr) \
                and row.model in ("*", model):
            return row
    return None


@dataclass(frozen=True)
class Calibration:
    """A threshold for ``fmr`` from ``impostor_pairs`` impostor scores; ``measured_fmr`` is the share
    of those scores at or above it."""

    threshold: float
    fmr: float
    impostor_pairs: int
    measured_fmr: float
    source: str

    def describe(self) -> str:
        return (f"threshold {self.threshold:.4f} for FMR {self.fmr:g} from {self.impostor_pairs} impostor pairs "
                f"({self.source}; measured FMR {self.measured_fmr:.2e})")


def impostor_scores(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosines of every pair ``i < j`` of unit ``vectors (N, d)`` whose ``labels (N,)`` differ."""
    vectors = np.asarray(vectors, np.float64)
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), 1)
    scores = (vectors @ vectors.T)[i, j]
    return np.asarray(scores[labels[i] != labels[j]])


def calibrate(scores: np.ndarray, fmr: float, source: str) -> Calibration:
    """The lowest threshold whose FMR on ``scores`` (impostor cosines) is at most ``fmr``.

    Refuses (one line) when there are fewer than ``1 / fmr`` pairs: such data cannot tell an FMR
    of ``fmr`` from 0.
    """
    if not 0.0 < fmr < 1.0:
        raise TerminalError(f"--fmr {fmr:g}: give a false match rate between 0 and 1, e.g. 1e-3")
    scores = np.asarray(scores, np.float64).reshape(-1)
    needed = int(np.ceil(1.0 / fmr))
    if scores.size < needed:
        raise TerminalError(f"{scores.size} impostor pairs cannot support FMR {fmr:g}: at least {needed} are needed; "
                            "enrol more people, add --data FACES/ or --synthetic N")
    threshold = threshold_at_far(scores, fmr)
    measured = float(np.count_nonzero(scores >= threshold) / scores.size)
    return Calibration(threshold, fmr, int(scores.size), measured, source)
