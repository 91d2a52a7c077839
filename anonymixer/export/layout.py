"""The layout of an export folder: the contract between `anonymixer export` and the runtimes.

    DIR/manifest.json
    DIR/encoder.onnx  DIR/mapping.onnx  DIR/mixer.onnx  DIR/generator.onnx        (fp32)
    DIR/encoder.fp16.onnx ...                                                     (--precision fp16)
    DIR/encoder.int8.onnx ...                                                     (--precision int8)
    DIR/encoder.int8-ort.onnx DIR/generator.int8-ort.onnx      (--precision int8: ONNX Runtime's CPU form)
    DIR/<graph>.onnx.data                                       (external weights when a graph is large)
    DIR/accuracy.json                                 (errors against fp32, when fp16/int8 are present)
    DIR/code_stats.npz           (the model's code statistics mu, C for the mixer's key material)

Graph I/O names and shapes are ``anonymixer.runtime.base.STAGE_IO``; the batch axis is dynamic
(``"batch"``; the mixer's key inputs ``key_matrix (D, D)``, ``key_offset (L, D)`` have none). Every graph
takes and returns float32 whatever its precision, so callers never change. A precision, once
written, has all four files; mapping and mixer are FP32 graphs in every precision (see
``export.precision``). A stage whose FP32 weights exceed ``external_data_min_bytes`` (the e4e
encoder) keeps them in ``<file>.data`` in every precision.

``manifest.json`` (``MANIFEST_FORMAT``, version ``MANIFEST_VERSION``)::

    {"format": "anonymixer-onnx", "version": 2, "anonymixer_version": "...", "opset": 17,
     "model": {"name", "description", "is_random", "sha256" (of the bundle file, or null),
               "spec" (the SPEC string, or null), "weights_sha256" (models.bundle.bundle_digest),
               "sources": [...], "config": ModelConfig.to_dict()},
     "input_size": 256, "style_dim": 512, "n_latent": 18, "output_resolution": 256,
     "crop_template": null | [[x, y] * 5] (landmarks in the crop, fractions; null: FFHQ quad),
     "layer_mask": [3, 4, 5, 6, 7], "mixer_mode": "project", "truncation_psi": 0.7,
     "project_rank": 256 (null unless "project"), "radius_guard": true, "code_stats": "code_stats.npz",
     "tools": {"torch", "onnx", "onnxruntime", "onnxslim"}, "external_data_min_bytes": 268435456,
     "graphs": {"<stage>": {"<precision>": {"file", "sha256", "bytes", "external_data": [files],
                "inputs": [{"name", "dtype", "shape"}], "outputs": [...],
                "operators": {"Conv": 53, ...}, "nodes": 412,
                "parity": {"batch_1", "batch_3", "slim_vs_unsimplified", "max", "tolerance",
                           "passed", "reference", "runtime"}              (fp32: ORT CPU vs torch)
                "error_vs_fp32": {"relative_error", "max_abs_error"}      (fp16, int8)
                "fp16": {"fp16_nodes", "fp32_nodes", "casts"}             (fp16)
                "int8": {"method", "samples", "quantized_nodes",
                         "kept_fp": {node: reason} or "whole graph ..."}}}},  (int8)
                (encoder and generator also have "int8-ort": the same fields, "int8": {"form", ...,
                 "cpu_flags"}: QOperator INT8 for ONNX Runtime's CPU provider, see export.int8_ort)
     "calibration": {"source": "folder"|"synthetic", "folder", "seed", "samples", "skipped",
                     "skipped_examples", "method", "keep_fp"},            (int8)
     "accuracy": {"file": "accuracy.json", "samples", "seed", "image_psnr_db": {"fp16", "int8"}},
     "files": {"<file>": {"sha256", "bytes"}},          (every graph, external data and report file)
     "digest": manifest_digest() of every other field}

Every field is covered by ``digest`` (``manifest_digest``: SHA-256 of the canonical JSON of the
manifest without it), which ``runtime.manifest.ExportManifest`` checks before it reads any field:
a field edited by hand (``crop_template``, ``mixer_mode``, ``layer_mask``...) is refused, so is a
manifest without a digest. The digest is in the file it covers, so it catches accidents and hand
edits, not an attacker who recomputes it: that is what ``anonymixer sign`` / ``--trusted-key`` are
for (``anonymixer.signing``, docs/integrity.md).

Relative errors are ``||out - ref|| / ||ref||``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..atomic import write_json

MANIFEST = "manifest.json"
SIGNATURE_SUFFIX = ".sig"          # FILE.sig: the Ed25519 signature of FILE (anonymixer.signing)
MANIFEST_FORMAT = "anonymixer-onnx"
MANIFEST_VERSION = 2   # 2: mixer takes key_matrix/key_offset (keyed mixer); code_stats.npz
PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_FOLDER = "engine_folder"   # the manifest table that marks an engine folder (runtime.engines)
ORT_INT8 = "int8-ort"              # INT8 in ONNX Runtime's CPU form (export.int8_ort): a form, not a precision
FORMS = (*PRECISIONS, ORT_INT8)    # every key a stage may have in the manifest's "graphs" table
GRAPHS = ("encoder", "mapping", "mixer", "generator")
DIGEST = "digest"                  # the manifest field that holds manifest_digest() of all the others


def graph_filename(stage: str, precision: str = "fp32") -> str:
    """``encoder.onnx`` for fp32, ``encoder.fp16.onnx`` / ``encoder.int8.onnx`` / ``encoder.int8-ort.onnx``."""
    if stage not in GRAPHS:
        raise ValueError(f"unknown graph {stage!r}; graphs are {', '.join(GRAPHS)}")
    if precision not in FORMS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(FORMS)}")
    return f"{stage}.onnx" if precision == "fp32" else f"{stage}.{precision}.onnx"


def manifest_digest(manifest: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of every field but ``digest``.

    JSON numbers read back by Python dump to the same text, so a manifest read and hashed again
    gives the digest it was written with.
    """
    fields = {name: value for name, value in manifest.items() if name != DIGEST}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def sealed(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` with ``digest`` set to ``manifest_digest`` of its other fields."""
    return {**{name: value for name, value in manifest.items() if name != DIGEST}, DIGEST: manifest_digest(manifest)}


def write_manifest(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Write ``folder/manifest.json``, sealed with its digest, atomically (``atomic.write_json``);
    return its path. A signature of the folder's former manifest no longer holds and is removed
    first (``manifest.json.sig``): the folder is unsigned until ``anonymixer sign`` signs it again."""
    path = Path(folder) / MANIFEST
    (Path(folder) / (MANIFEST + SIGNATURE_SUFFIX)).unlink(missing_ok=True)
    write_json(path, sealed(manifest), indent=1)
    return path
