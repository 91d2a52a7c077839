"""Key material: the matrix and offset a key gives the mixer, computed once per key (NumPy only).

Every mixer mode is one affine map of the identity layers, so the mixer graph is the same for all::

    w_prot = select(layer_mask, w_real @ key_matrix + key_offset, w_real)   (+ radius guard)

with ``key_matrix (D, D)`` and ``key_offset (L, D)`` float32 graph inputs *without a batch axis*.
In the whitened code ``u = (w - mu) C^-1/2`` (row vectors; ``codestats``), with ``Q`` a
Haar-random orthogonal matrix of the key:

- ``rotate``:  ``u' = u Q^T``                     ->  ``M = C^-1/2 Q^T C^1/2``, ``b = mu - mu M``.
  Distances between people are kept; each key is a different map; invertible with the key.
- ``project``: ``u' = (u P + g (I - P)) Q^T``     with ``P`` the projector on a key-chosen
  ``rank``-dimensional subspace and ``g ~ N(0, I)`` from the key: many-to-one, so even the key
  holder cannot recover the ``D - rank`` dimensions that were replaced.
- ``swap``:    ``M = 0``, ``b = w_key`` (the paper's starting point): everyone under one key gets
  the key's identity, so it is *not* cancelable on its own.
- ``learned``: as ``swap``, plus the learned residual of ``models.mixer`` on ``(w_real, w_key)``.

``Q`` is the QR decomposition of a Gaussian matrix from the key stream ``"rotation"`` with the
signs of ``R``'s diagonal moved into ``Q`` (Mezzadri 2007: then ``Q`` is Haar-distributed), in
float64. The normals are bit-exact (``keys``); LAPACK's QR may differ across platforms in the last
float64 bits, far below the float32 the graphs receive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .codestats import CodeStats
from .errors import AnonymixerError
from .keys import Key, derive_normals

MIXER_MODES = ("rotate", "project", "swap", "learned")
AFFINE_MODES = ("rotate", "project")     # the modes whose output depends on w_real (radius guard)
KEY_INPUTS = ("key_matrix", "key_offset")
TEMPLATE_STREAMS = ("template/rotation", "template/project")   # the terminal's, apart from the mixer's
PINV_RCOND = 1e-4   # singular values below this x the largest are float32 noise of erased directions


class MappingRunner(Protocol):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True, eq=False)
class KeyMaterial:
    """``matrix (D, D)`` and ``offset (L, D)``, float32: the mixer graph's key inputs."""

    matrix: np.ndarray
    offset: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        """``{"key_matrix": ..., "key_offset": ...}``, as the mixer graph takes them."""
        return {"key_matrix": self.matrix, "key_offset": self.offset}


def check_mode(mode: str) -> str:
    if mode not in MIXER_MODES:
        raise AnonymixerError(f"unknown mixer mode {mode!r}: choose one of {', '.join(MIXER_MODES)}")
    return mode


def check_rank(rank: int | None, dim: int) -> int:
    """``project``'s kept dimensions: ``rank`` in ``1..D``, default ``D // 2``."""
    if rank is None:
        return dim // 2
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= dim:
        raise AnonymixerError(f"project rank {rank!r} must be an integer from 1 to the code size {dim}")
    return int(rank)


def streams_for(mode: str, dim: int) -> dict[str, int]:
    """The key streams (name -> count of normals) that ``mode`` draws from."""
    if mode == "rotate":
        return {"rotation": dim * dim}
    if mode == "project":
        return {"rotation": dim * dim, "project": dim * dim, "fill": dim}
    return {"z": dim}


def haar_orthogonal(normals: np.ndarray, dim: int) -> np.ndarray:
    """A Haar-random orthogonal ``(dim, dim)`` float64 matrix from ``dim * dim`` standard normals."""
    q, r = np.linalg.qr(np.asarray(normals, dtype=np.float64)[: dim * dim].reshape(dim, dim))
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    return np.asarray(q * signs, dtype=np.float64)


def kept_projector(normals: np.ndarray, dim: int, rank: int | None) -> np.ndarray:
    """``P (dim, dim)`` float64: the orthogonal projector on a key-chosen ``rank``-dimensional
    subspace (the first ``rank`` columns of a Haar-random orthogonal matrix from ``normals``)."""
    basis = haar_orthogonal(normals, dim)[:, : check_rank(rank, dim)]
    return np.asarray(basis @ basis.T, dtype=np.float64)


def template_projection(key: Key, salt: bytes | str | None, dim: int, rank: int | None) -> np.ndarray:
    """``P Q^T (dim, dim)`` float64: ``project``'s many-to-one map without the fill, for templates
    (``anonymixer.terminal``): ``t = x P Q^T`` for a recogniser's normalised embedding ``x (dim,)``.

    Drawn from streams of their own (:data:`TEMPLATE_STREAMS`), so the generator's mixer and the
    templates never share a normal of one key: seeing one use tells nothing of the other. No fill:
    it keeps a *code* in the generator's distribution, and a template is never rendered; under one
    key it would add the same vector to every template and only squeeze the scores together.
    """
    normals = derive_normals(key, salt, {name: dim * dim for name in TEMPLATE_STREAMS})
    rotation_t = haar_orthogonal(normals[TEMPLATE_STREAMS[0]], dim).T
    return kept_projector(normals[TEMPLATE_STREAMS[1]], dim, rank) @ rotation_t


def affine_material(mode: str, stats: CodeStats, n_latent: int, normals: Mapping[str, np.ndarray],
                    rank: int | None = None) -> KeyMaterial:
    """``rotate``/``project`` material from the key's normals (``streams_for``); see the module doc."""
    dim = stats.dim
    rotation_t = haar_orthogonal(normals["rotation"], dim).T
    whitened_map, fill = rotation_t, np.zeros(dim)
    if mode == "project":
        kept = kept_projector(normals["project"], dim, rank)
        g = np.asarray(normals["fill"][:dim], dtype=np.float64)
        whitened_map, fill = kept @ rotation_t, (g - g @ kept) @ rotation_t
    whiten, colour = stats.inv_sqrt_cov(), stats.sqrt_cov()
    matrix = whiten @ whitened_map @ colour
    offset = stats.mean - stats.mean @ matrix + fill @ colour
    return KeyMaterial(matrix.astype(np.float32),
                       np.broadcast_to(offset, (n_latent, dim)).astype(np.float32))


def swap_material(w_key: np.ndarray) -> KeyMaterial:
    """``swap``/``learned``: ``M = 0``, ``b = w_key (L, D)`` (the key's code through the mapping)."""
    offset = np.ascontiguousarray(w_key, dtype=np.float32)
    n_latent, dim = offset.shape[-2:]
    return KeyMaterial(np.zeros((dim, dim), np.float32), offset.reshape(n_latent, dim))


def key_material(key: Key, salt: bytes | str | None, mode: str, stats: CodeStats, n_latent: int,
                 mapping: MappingRunner | None = None, rank: int | None = None) -> KeyMaterial:
    """The key's material for ``mode``: one scrypt, the streams ``mode`` needs, and (``swap``,
    ``learned``) one run of the ``mapping`` graph on the key's ``z``."""
    normals = derive_normals(key, salt, streams_for(check_mode(mode), stats.dim))
    if mode in AFFINE_MODES:
        return affine_material(mode, stats, n_latent, normals, rank)
    if mapping is None:
        raise AnonymixerError(f"mixer mode {mode!r} needs the mapping graph for the key's code")
    z = normals["z"].astype(np.float32)[None]
    return swap_material(mapping.run({"z": z})["w_key"][0])


def inverse(material: KeyMaterial, mean: np.ndarray) -> KeyMaterial:
    """What a key holder can undo: the least-squares inverse map ``w = (w_prot - b) pinv(M)``, with
    the code ``mean`` on the directions ``M`` erased, as key material for the same mixer graph.
    Exact for ``rotate`` (up to the radius guard's scale); the kept subspace for ``project``; the
    mean for ``swap`` (``M = 0``)."""
    matrix = material.matrix.astype(np.float64)
    # The matrix is float32: directions project erased come back as ~1e-7 singular values, not 0.
    pinv = np.linalg.pinv(matrix, rcond=PINV_RCOND)
    mean = np.asarray(mean, dtype=np.float64)
    offset = -material.offset.astype(np.float64) @ pinv + (mean - mean @ matrix @ pinv)
    return KeyMaterial(pinv.astype(np.float32), offset.astype(np.float32))
