"""Biometric metrics in plain NumPy: ROC/DET, EER, AUC, TAR@FAR, PSR, attack success, linkability.

Score convention: **similarity**, higher = more alike. A comparison *matches* at threshold ``t``
when ``score >= t``. A system that outputs distances (dlib: Euclidean distance, match when
``d <= 0.6``) is scored by negation, ``score = -d`` (so dlib's threshold is ``-0.6``); every
threshold in reports is in the same negated units. Scores are float64 1-D arrays.

Vocabulary (ISO/IEC 19795-1, ISO/IEC 30136):

- *mated* comparisons are of the same person, *non-mated* of different people;
- ``FAR(t)`` (false accept / false match rate) = share of non-mated scores ``>= t``;
- ``FRR(t)`` = share of mated scores ``< t``; ``TAR(t) = 1 - FRR(t)``;
- ``EER``: the rate where ``FAR = FRR``;
- *protection success rate* ``PSR(t)``: share of (protected, original) mated pairs that do **not**
  match;
- *attack success rate* ``ASR(t)``: share of (reconstruction, original) mated pairs that match;
- *linkability* (Gomez-Barrero et al., "General Framework to Evaluate Unlinkability in Biometric
  Template Protection Systems", IEEE TIFS 13(6), 2018): see :func:`linkability`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import EvaluationError

DEFAULT_FARS = (1e-2, 1e-3, 1e-4)


# A metric that cannot be computed from the scores given (e.g. an empty score list).
MetricsError = EvaluationError


def as_scores(scores: object, what: str = "scores") -> np.ndarray:
    """``(N,)`` float64 finite scores from any array-like; ``MetricsError`` if empty or not finite."""
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise MetricsError(f"no {what}: at least one comparison is needed (check that faces were found)")
    if not np.all(np.isfinite(array)):
        raise MetricsError(f"{what} contain NaN or infinite values; check the face recognition model")
    return array


def distances_to_scores(distances: object) -> np.ndarray:
    """Distances (lower = more alike) -> similarity scores by negation, ``(N,)`` float64."""
    return -as_scores(distances, "distances")


@dataclass(frozen=True)
class ROC:
    """Operating points, thresholds descending: ``thresholds[k]`` gives ``far[k]``, ``tar[k]``.

    The first point is a threshold just above every score (FAR = TAR = 0); each later one is a
    distinct score, so the curve holds every attainable operating point. All arrays ``(K,)``.
    """

    thresholds: np.ndarray
    far: np.ndarray
    tar: np.ndarray

    @property
    def frr(self) -> np.ndarray:
        return 1.0 - self.tar


def roc(mated: object, non_mated: object) -> ROC:
    """ROC of mated vs non-mated similarity scores (``score >= t`` matches), ``O(N log N)``."""
    m = np.sort(as_scores(mated, "mated scores"))
    n = np.sort(as_scores(non_mated, "non-mated scores"))
    distinct = np.unique(np.concatenate([m, n]))[::-1]
    top = np.nextafter(distinct[0], np.inf)
    thresholds = np.concatenate([[top], distinct])
    # share of scores >= t = (N - count of scores < t) / N, in integers first so that rates are exact
    tar = (m.size - np.searchsorted(m, thresholds, side="left")) / m.size
    far = (n.size - np.searchsorted(n, thresholds, side="left")) / n.size
    return ROC(thresholds=thresholds, far=far, tar=tar)


def det(mated: object, non_mated: object) -> tuple[np.ndarray, np.ndarray]:
    """DET points ``(far, frr)``, each ``(K,)``, from the ROC (plot them on normal-deviate axes)."""
    curve = roc(mated, non_mated)
    return curve.far, curve.frr


def auc(mated: object, non_mated: object) -> float:
    """Area under the ROC = P(mated > non-mated) + P(tie) / 2 (the Mann-Whitney statistic)."""
    m = as_scores(mated, "mated scores")
    n = np.sort(as_scores(non_mated, "non-mated scores"))
    below = np.searchsorted(n, m, side="left")
    ties = np.searchsorted(n, m, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (m.size * n.size))


@dataclass(frozen=True)
class EER:
    """Equal error rate and the threshold where FAR and FRR cross."""

    rate: float
    threshold: float


def eer(mated: object, non_mated: object) -> EER:
    """EER by linear interpolation between the two ROC points that bracket ``FAR = FRR``.

    FAR falls and FRR rises as the threshold goes up; the crossing lies between the last point with
    ``FAR > FRR`` and the first with ``FAR <= FRR``. Disjoint distributions give exactly 0.
    """
    curve = roc(mated, non_mated)
    t, far, frr = curve.thresholds[::-1], curve.far[::-1], curve.frr[::-1]  # ascending thresholds
    gap = far - frr                                                          # decreasing
    k = int(np.argmax(gap <= 0.0))  # first point where FRR has caught up (always exists: gap[-1] <= 0)
    if k == 0 or gap[k] == 0.0:  # rates are constant on (t[k-1], t[k]]: report its lowest point
        lowest = t[k] if k == 0 else np.nextafter(t[k - 1], np.inf)
        return EER(rate=float((far[k] + frr[k]) / 2.0), threshold=float(lowest))
    alpha = gap[k - 1] / (gap[k - 1] - gap[k])
    rate = far[k - 1] + alpha * (far[k] - far[k - 1])
    return EER(rate=float(rate), threshold=float(t[k - 1] + alpha * (t[k] - t[k - 1])))


@dataclass(frozen=True)
class OperatingPoint:
    """TAR at a target FAR: the lowest threshold whose measured FAR is at most the target.

    ``threshold`` is the infimum of the thresholds that give this (FAR, TAR) point: a hair above the
    score just below it (``np.nextafter``), not a score itself as in scikit-learn's ``roc_curve``.

    ``resolved`` is False when there are fewer than ``1 / target`` non-mated scores: the FAR cannot
    be measured that finely and the point is then the ``FAR = 0`` point of this data.
    """

    target_far: float
    far: float
    tar: float
    threshold: float
    resolved: bool


def tar_at_far(mated: object, non_mated: object, target: float) -> OperatingPoint:
    """TAR at the lowest threshold ``t`` with ``FAR(t) <= target`` (the highest TAR allowed)."""
    if not 0.0 <= target <= 1.0:
        raise MetricsError(f"target FAR must be in [0, 1], got {target}")
    n_non_mated = np.asarray(non_mated).size
    curve = roc(mated, non_mated)
    k = int(np.nonzero(curve.far <= target)[0][-1])  # FAR is non-increasing in t; index 0 has FAR 0
    # Every t in (next lower score, thresholds[k]] gives this point; report the lowest (the infimum),
    # which on small data sits just above the highest non-mated score that must be rejected rather than
    # at the next mated score: the conservative choice for the PSR and ASR measured at it.
    lowest = np.nextafter(curve.thresholds[k + 1], np.inf) if k + 1 < curve.thresholds.size else curve.thresholds[k]
    return OperatingPoint(target_far=target, far=float(curve.far[k]), tar=float(curve.tar[k]),
                          threshold=float(lowest), resolved=n_non_mated * target >= 1.0)


def threshold_at_far(non_mated: object, target: float) -> float:
    """The lowest threshold ``t`` with ``FAR(t) <= target`` from non-mated (impostor) scores alone:
    a hair above the ``floor(target * N) + 1``-th highest score (the infimum, as ``tar_at_far``).
    With fewer than ``1 / target`` scores that is the ``FAR = 0`` point of this data."""
    if not 0.0 <= target <= 1.0:
        raise MetricsError(f"target FAR must be in [0, 1], got {target}")
    n = np.sort(as_scores(non_mated, "non-mated scores"))[::-1]
    allowed = int(np.floor(target * n.size))
    if allowed >= n.size:
        return float(n[-1])
    return float(np.nextafter(n[allowed], np.inf))


def match_rate(scores: object, threshold: float) -> float:
    """Share of ``scores`` that match (``>= threshold``)."""
    s = as_scores(scores)
    return float(np.count_nonzero(s >= threshold) / s.size)


def protection_success_rate(protected_vs_original: object, threshold: float) -> float:
    """PSR: share of (protected, original) mated scores that do **not** match at ``threshold``."""
    return 1.0 - match_rate(protected_vs_original, threshold)


def attack_success_rate(reconstruction_vs_original: object, threshold: float) -> float:
    """ASR: share of (attacker's reconstruction, original) mated scores that match at ``threshold``."""
    return match_rate(reconstruction_vs_original, threshold)


@dataclass(frozen=True)
class Linkability:
    """Gomez-Barrero et al. 2018 linkability of mated vs non-mated scores.

    ``scores (K,)`` are the evaluation points (bin centres or KDE grid), ``local (K,)`` is
    ``D<->(s)`` there, ``p_mated``/``p_non_mated (K,)`` the score densities, ``d_sys`` the global
    measure in [0, 1] (0: fully unlinkable, 1: fully linkable).
    """

    d_sys: float
    scores: np.ndarray
    local: np.ndarray
    p_mated: np.ndarray
    p_non_mated: np.ndarray
    omega: float
    method: str


def linkability(mated: object, non_mated: object, omega: float = 1.0,
                method: Literal["histogram", "kde"] = "histogram", bins: int | None = None) -> Linkability:
    """Local ``D<->(s)`` and global ``D_sys`` linkability (Gomez-Barrero et al., IEEE TIFS 2018).

    With ``LR(s) = p(s|H_m) / p(s|H_nm)`` and the prior ratio ``omega = p(H_m) / p(H_nm)``
    (default 1, as in the paper's reference code), the local measure is

        D<->(s) = p(H_m|s) - p(H_nm|s) = 2 * omega*LR / (1 + omega*LR) - 1   where omega*LR > 1,
        D<->(s) = 0                                                           elsewhere,

    and ``D<->(s) = 1`` where only mated scores occur (``p(s|H_nm) = 0``). The global measure is its
    expectation over mated scores, ``D_sys = integral p(s|H_m) D<->(s) ds``.

    ``method="histogram"`` follows the reference implementation: both densities are normalised
    histograms on shared bins spanning all scores, ``bins`` = ``min(N_mated / 10, 100)`` (at least
    2) unless given; the integral is the exact sum over bins (sum of D times mated probability mass;
    the reference's trapezoid over bin centres differs from it only by half the end bins' mass).
    ``method="kde"`` uses Gaussian kernel densities (Silverman's bandwidth, each class its own) on a
    512-point grid padded by 3 bandwidths, integrated by the trapezoid rule.
    """
    m = as_scores(mated, "mated scores")
    n = as_scores(non_mated, "non-mated scores")
    if omega <= 0:
        raise MetricsError(f"omega (prior ratio) must be > 0, got {omega}")
    if method == "histogram":
        k = bins if bins is not None else int(np.clip(m.size // 10, 2, 100))
        lo, hi = min(m.min(), n.min()), max(m.max(), n.max())
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, k + 1)
        p_m = np.histogram(m, bins=edges, density=True)[0]
        p_n = np.histogram(n, bins=edges, density=True)[0]
        grid = (edges[1:] + edges[:-1]) / 2.0
        local = _local_linkability(p_m, p_n, omega)
        d_sys = float(np.sum(local * p_m * np.diff(edges)))
    elif method == "kde":
        h_m, h_n = _silverman(m), _silverman(n)
        pad = 3.0 * max(h_m, h_n)
        grid = np.linspace(min(m.min(), n.min()) - pad, max(m.max(), n.max()) + pad, 512)
        p_m, p_n = _gaussian_kde(m, grid, h_m), _gaussian_kde(n, grid, h_n)
        local = _local_linkability(p_m, p_n, omega)
        y = local * p_m
        d_sys = float(np.sum((y[1:] + y[:-1]) * np.diff(grid)) / 2.0)  # trapezoid rule
    else:
        raise MetricsError(f"unknown linkability method {method!r}: use 'histogram' or 'kde'")
    return Linkability(d_sys=float(np.clip(d_sys, 0.0, 1.0)), scores=grid, local=local, p_mated=p_m,
                       p_non_mated=p_n, omega=omega, method=method)


def _local_linkability(p_m: np.ndarray, p_n: np.ndarray, omega: float) -> np.ndarray:
    """``D<->(s)`` from the two densities on the same points."""
    with np.errstate(over="ignore"):  # a vanishing KDE tail gives ratio = inf, and D = 1 there
        ratio = np.divide(p_m, p_n, out=np.ones_like(p_m), where=p_n > 0) * omega
    local = np.where(ratio > 1.0, 1.0 - 2.0 / (1.0 + ratio), 0.0)  # = 2 r / (1 + r) - 1, finite at r = inf
    return np.where(p_n > 0, local, 1.0)


def _silverman(x: np.ndarray) -> float:
    """Silverman's rule-of-thumb bandwidth, floored so that constant data still gets a kernel."""
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    spread = min(np.std(x, ddof=1) if x.size > 1 else 0.0, iqr / 1.349) or np.std(x) or 1e-3
    return float(0.9 * spread * x.size ** -0.2)


def _gaussian_kde(x: np.ndarray, grid: np.ndarray, h: float, chunk: int = 4096) -> np.ndarray:
    """Gaussian kernel density of samples ``x (N,)`` at ``grid (K,)``; memory ``chunk * K``."""
    density = np.zeros_like(grid)
    for i in range(0, x.size, chunk):
        z = (grid[None, :] - x[i:i + chunk, None]) / h
        density += np.exp(-0.5 * z * z).sum(axis=0)
    return density / (x.size * h * np.sqrt(2.0 * np.pi))


def summarize(scores: object) -> dict[str, float]:
    """Count, mean, std, min, 5/50/95th percentiles and max of a score list (for reports)."""
    s = as_scores(scores)
    p5, p50, p95 = np.percentile(s, [5, 50, 95])
    return {"n": int(s.size), "mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()),
            "p5": float(p5), "median": float(p50), "p95": float(p95), "max": float(s.max())}


def verification_metrics(mated: object, non_mated: object,
                         fars: tuple[float, ...] = DEFAULT_FARS) -> dict[str, object]:
    """EER (+ threshold), AUC and TAR at each FAR (+ thresholds) as one JSON-ready dict."""
    e = eer(mated, non_mated)
    points = [tar_at_far(mated, non_mated, f) for f in fars]
    return {
        "eer": e.rate, "eer_threshold": e.threshold, "auc": auc(mated, non_mated),
        "tar_at_far": {f"{p.target_far:g}": {"tar": p.tar, "far": p.far, "threshold": p.threshold,
                                             "resolved": p.resolved} for p in points},
    }
