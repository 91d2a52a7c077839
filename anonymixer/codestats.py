"""Code statistics of a model: where the generator's codes live, for the mixer's keyed transforms.

A model's identity codes ``w (D,)`` are modelled as ``N(mu, C)``. The mixer works in the
*whitened* code ``u = C^-1/2 (w - mu)`` (~N(0, I), typical norm ``sqrt(D)``), where a rotation
or a projection keeps a code in distribution:

- StyleGAN2: ``(mu, C)`` measured from the mapping network (``from_samples`` on mapped ``z``), with
  an eigenvalue floor so that ``C^-1/2`` stays bounded on directions the mapping hardly uses;
  measured at ``anonymixer import`` / random bundle creation, stored in the bundle and the export
  folder (``code_stats.npz``).
- faces64 (mapping = identity, ``z ~ N(0, I)``): ``identity(D)``, ``mu = 0, C = I``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError

STATS_FILE = "code_stats.npz"
EIGENVALUE_FLOOR = 1e-3   # relative to the largest eigenvalue
_FIELDS = ("mean", "eigenvalues", "eigenvectors")


@dataclass(frozen=True, eq=False)
class CodeStats:
    """``mean (D,)``, ``eigenvalues (D,)`` (floored, > 0) and ``eigenvectors (D, D)`` (columns) of
    ``C``, float64. ``radius``: the prior's typical whitened norm, ``sqrt(D)``."""

    mean: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def radius(self) -> float:
        return float(np.sqrt(self.dim))

    def sqrt_cov(self) -> np.ndarray:
        """``C^1/2 (D, D)`` float64, symmetric."""
        v = self.eigenvectors
        return (v * np.sqrt(self.eigenvalues)) @ v.T

    def inv_sqrt_cov(self) -> np.ndarray:
        """``C^-1/2 (D, D)`` float64, symmetric (the whitening matrix)."""
        v = self.eigenvectors
        return (v / np.sqrt(self.eigenvalues)) @ v.T

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Any, source: str = "code statistics") -> "CodeStats":
        """From a mapping of the three arrays (an ``.npz``, a bundle's tensors); checks their shapes."""
        try:
            raw = {name: np.asarray(arrays[name]) for name in _FIELDS}
        except KeyError as exc:
            raise ExportError(f"{source}: missing array {exc}") from None
        if not all(np.issubdtype(v.dtype, np.floating) for v in raw.values()):
            raise ExportError(f"{source}: garbled code statistics (want real floating-point arrays, got "
                              f"{', '.join(str(v.dtype) for v in raw.values())})")
        values = {name: v.astype(np.float64) for name, v in raw.items()}
        d = values["mean"].shape[0] if values["mean"].ndim == 1 else -1
        if (d <= 0 or values["eigenvalues"].shape != (d,) or values["eigenvectors"].shape != (d, d)
                or not np.all(values["eigenvalues"] > 0) or not all(np.isfinite(v).all() for v in values.values())):
            raise ExportError(f"{source}: garbled code statistics (want mean (D,), eigenvalues (D,) > 0, "
                              "eigenvectors (D, D), all finite)")
        return cls(**values)


def identity(dim: int) -> CodeStats:
    """``mu = 0, C = I``: codes that are ``N(0, I)`` already (faces64's ``z``)."""
    return CodeStats(np.zeros(dim), np.ones(dim), np.eye(dim))


def from_samples(codes: np.ndarray, floor: float = EIGENVALUE_FLOOR) -> CodeStats:
    """Mean and eigendecomposition of sample codes ``(N, D)``, eigenvalues floored at
    ``floor * max``."""
    codes = np.asarray(codes, dtype=np.float64)
    mean = codes.mean(axis=0)
    cov = np.cov(codes - mean, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh((cov + cov.T) / 2)
    eigenvalues = np.maximum(eigenvalues, floor * eigenvalues.max())
    return CodeStats(mean, eigenvalues, eigenvectors)


def save(stats: CodeStats, folder: Path) -> Path:
    """Write ``folder/code_stats.npz`` (no pickles)."""
    path = folder / STATS_FILE
    with open(path, "wb") as f:
        np.savez(f, mean=stats.mean, eigenvalues=stats.eigenvalues, eigenvectors=stats.eigenvectors)
    return path


def load(folder: Path) -> CodeStats:
    """Read ``folder/code_stats.npz``; one-line ``ExportError`` if missing or garbled."""
    path = folder / STATS_FILE
    if not path.is_file():
        raise ExportError(f"{path}: missing code statistics; re-export the model with `anonymixer export`")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # numpy and zipfile raise many types for a garbled file (EOFError, BadZipFile...)
        raise ExportError(f"{path}: unreadable code statistics ({type(exc).__name__}); "
                          "re-export the model with `anonymixer export`") from None
    try:
        return CodeStats.from_arrays(arrays, str(path))
    except ExportError as exc:
        raise ExportError(f"{exc}; re-export the model with `anonymixer export`") from None
