"""FP16 and INT8 graphs derived from the FP32 graphs of an export folder (no PyTorch needed).

``export_onnx`` calls ``add_precisions`` after writing the FP32 graphs; ``anonymixer calibrate``
calls it on an existing folder. Every precision gets all four graph files so that a runtime reads
one precision from one set of names; graphs that have nothing to gain are written in FP32:

=========  ==========================================  =============================================
graph      fp16                                        int8
=========  ==========================================  =============================================
encoder    FP16 feature maps, FP32 islands (fp16.py)   Q/DQ convs, the rest as in fp16 (int8.py)
generator  FP16 feature maps, FP32 islands (fp16.py)   Q/DQ convs; FIR, ToRGB, deconvolutions as in fp16
           QOperator QLinearConv for ONNX Runtime's CPU provider (int8_ort.py), both stages
mapping    FP32 (no feature maps; the key path)        FP32 (2 M MAC, once per key)
mixer      FP32 (bit-exact pass-through of w_real)     FP32 (bit-exact pass-through of w_real)
=========  ==========================================  =============================================

The INT8 graphs are derived from the FP16 graphs (``int8.tensorrt_form``: FP16 scales, the same
FP32 islands), so that a strongly typed TensorRT build runs what is not quantized in FP16.

INT8 comes in two forms from one calibration: ``<stage>.int8.onnx`` (Q/DQ, TensorRT's form, for
TensorRT and ONNX Runtime's GPU providers) and ``<stage>.int8-ort.onnx`` (QOperator, ONNX Runtime's
CPU provider), the latter under the manifest key ``int8-ort`` and in the accuracy report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..atomic import check_writable
from ..calibration import CalibrationSet, GraphSet, folder_faces, stage_feeds, synthetic_faces
from ..errors import ExportError
from ..digest import sha256_file
from ..bench.machine import cpu_flags
from ..runtime.manifest import ExportManifest
from ..signing import written_by_this_process
from .accuracy import ACCURACY_FILE, accuracy_report
from .fp16 import convert_fp16, fp16_node_names
from .graphfile import check_graph, graph_entry, load_graph, save_graph
from .int8 import CALIB_METHODS, DECONV_MODES, DEFAULT_DECONV, fp32_islands, match_nodes, quantize_int8, tensorrt_form
from .int8_ort import quantize_int8_ort
from .layout import FORMS, GRAPHS, MANIFEST, ORT_INT8, PRECISIONS, graph_filename, write_manifest

INT8_STAGES = ("encoder", "generator")
DEFAULT_CALIB_SYNTHETIC = 32
CALIB_SEED = 1


def add_precisions(folder: str | os.PathLike[str], precisions: Sequence[str], calib: str | Path | None = None,
                   calib_synthetic: int | None = None, calib_method: str = "minmax",
                   keep_fp: Sequence[str] = (), progress: bool = True,
                   int8_deconv: str = DEFAULT_DECONV) -> dict[str, Any]:
    """Write the ``fp16``/``int8`` graphs of export folder ``folder`` and re-measure accuracy.

    INT8 calibrates on the aligned faces of ``calib`` (a folder) or on ``calib_synthetic`` faces
    drawn by the model (default ``DEFAULT_CALIB_SYNTHETIC``), with ``calib_method`` (minmax,
    entropy, percentile); ``keep_fp`` patterns keep matching convolutions in floating point.
    Writes ``accuracy.json`` for every reduced precision present and updates ``manifest.json``;
    returns the manifest. Errors (missing or corrupt files, bad calibration folder, a pattern that
    matches nothing) are one-line ``ExportError``s. ``int8_deconv``: how INT8 treats
    deconvolutions (``int8.DECONV_MODES``), recorded in the manifest.
    """
    folder = Path(folder)
    wanted = [p for p in PRECISIONS[1:] if p in {q.strip().lower() for q in precisions}]
    unknown = sorted({q.strip().lower() for q in precisions} - set(PRECISIONS))
    if unknown:
        raise ExportError(f"unknown precision {', '.join(unknown)}: choose from fp16, int8")
    if "int8" in wanted:
        check_calibration_options(calib, calib_synthetic, calib_method, int8_deconv)
    existing = ExportManifest(folder)
    # Every graph already there is checked, not only fp32: the files table is re-hashed at the end,
    # which must never bless a file that was altered before this run.
    for stage in GRAPHS:
        for precision in [f for f in FORMS if f in (existing.data["graphs"].get(stage) or {})]:   # int8-ort too
            existing.graph(stage, precision).verify()
    manifest = existing.data
    check_writable(folder)   # a read-only export folder fails here, not after calibration
    written_by_this_process(folder)   # checked above; what this run writes next is signed again by `anonymixer sign`
    fp32 = GraphSet(folder, "fp32", verify=False)  # verified just above
    external = {s: bool(manifest["graphs"][s]["fp32"].get("external_data")) for s in GRAPHS}

    if "fp16" in wanted:
        for stage in tqdm(GRAPHS, desc="fp16", unit="graph", disable=None if progress else True):
            report = convert_fp16(fp32.paths[stage], folder / graph_filename(stage, "fp16"), external[stage])
            _record(manifest, folder, stage, "fp16", report, {"fp16": _without_files(report)})

    if "int8" in wanted:
        _check_patterns(fp32, keep_fp)
        calibration = _calibration_set(fp32, calib, calib_synthetic, progress)
        n = len(calibration.faces)
        with tqdm(total=n, desc="calibration: fp32 pipeline", unit="face", disable=None if progress else True) as bar:
            feeds = stage_feeds(fp32, calibration.faces, seed=CALIB_SEED + 1, on_chunk=bar.update)
        fp32.close()
        with tqdm(total=2 * n * len(INT8_STAGES), desc=f"int8 ({calib_method})", unit="sample",
                  disable=None if progress else True) as bar:
            for stage in GRAPHS:
                bar.set_postfix_str(stage)
                dst = folder / graph_filename(stage, "int8")
                if stage in INT8_STAGES:
                    graph = load_graph(fp32.paths[stage], load_weights=False)
                    hot = fp16_node_names(graph)
                    report = quantize_int8(fp32.paths[stage], dst, feeds[stage], calib_method, keep_fp,
                                           external[stage], on_sample=bar.update, deconv=int8_deconv,
                                           transform=partial(tensorrt_form, fp16_nodes=hot),
                                           keep_nodes=fp32_islands(graph, hot))
                else:
                    files = save_graph(load_graph(fp32.paths[stage]), dst, external[stage])
                    report = {"files": files, "kept_fp": "whole graph (see export.precision)"}
                _record(manifest, folder, stage, "int8", report, {"int8": _without_files(report)})
                if stage in INT8_STAGES:
                    report = quantize_int8_ort(fp32.paths[stage], folder / graph_filename(stage, ORT_INT8),
                                               feeds[stage], calib_method, keep_fp, external[stage],
                                               on_sample=bar.update)
                    _record(manifest, folder, stage, ORT_INT8, report,
                            {"int8": _without_files(report) | {"cpu_flags": cpu_flags()}})
        manifest["calibration"] = calibration.describe() | {"method": calib_method, "keep_fp": list(keep_fp),
                                                             "int8_deconv": int8_deconv}

    present = [p for p in PRECISIONS if all(p in manifest["graphs"][s] for s in GRAPHS)]
    present += [ORT_INT8] if all(ORT_INT8 in manifest["graphs"][s] for s in INT8_STAGES) else []
    write_manifest(folder, manifest)  # the accuracy report reads the graphs through it
    if len(present) > 1:
        accuracy = accuracy_report(folder, present, progress=progress)
        manifest["accuracy"] = {"file": ACCURACY_FILE, "samples": accuracy["samples"], "seed": accuracy["seed"],
                                "image_psnr_db": {p: r["pipeline"]["image_psnr_db"]
                                                  for p, r in accuracy["precisions"].items()}}
        for precision, row in accuracy["precisions"].items():
            for stage in GRAPHS:
                if precision in manifest["graphs"][stage]:
                    manifest["graphs"][stage][precision]["error_vs_fp32"] = row["stages"][stage]
    manifest["files"] = file_table(folder, manifest)
    write_manifest(folder, manifest)
    return manifest


def check_calibration_options(calib: str | Path | None, calib_synthetic: int | None, calib_method: str,
                              int8_deconv: str = DEFAULT_DECONV) -> None:
    """Refuse contradictory or impossible calibration options before any long work starts."""
    if int8_deconv not in DECONV_MODES:
        raise ExportError(f"unknown --int8-deconv {int8_deconv!r}: choose one of {', '.join(DECONV_MODES)}")
    if calib is not None and calib_synthetic is not None:
        raise ExportError("--calib DIR and --calib-synthetic N exclude each other: choose one")
    if calib_method not in CALIB_METHODS:
        raise ExportError(f"unknown calibration method {calib_method!r}: choose one of {', '.join(CALIB_METHODS)}")
    if calib_synthetic is not None and calib_synthetic < 1:
        raise ExportError(f"--calib-synthetic needs at least 1 sample, got {calib_synthetic}")
    if calib is not None and not Path(calib).is_dir():
        what = "is a file, not a folder" if Path(calib).exists() else "no such calibration folder"
        raise ExportError(f"{calib}: {what}; pass a folder of aligned face images with --calib, "
                          "or use --calib-synthetic N")


def file_table(folder: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{file name: {"sha256", "bytes"}}`` for every graph file, external data file, the report and
    the code statistics."""
    names: list[str] = []
    for stage in GRAPHS:
        for precision in FORMS:
            entry = manifest["graphs"].get(stage, {}).get(precision)
            if entry:
                names += [entry["file"], *entry.get("external_data", [])]
    if (folder / ACCURACY_FILE).is_file():
        names.append(ACCURACY_FILE)
    if manifest.get("code_stats") and (folder / manifest["code_stats"]).is_file():
        names.append(manifest["code_stats"])   # the mixer's key material depends on it
    return {n: {"sha256": sha256_file(folder / n), "bytes": (folder / n).stat().st_size} for n in names}


def _record(manifest: dict[str, Any], folder: Path, stage: str, precision: str, report: dict[str, Any],
            extra: dict[str, Any]) -> None:
    path = folder / report["files"][0]
    check_graph(path)
    entry = graph_entry(folder, report["files"], load_graph(path, load_weights=False))
    manifest["graphs"][stage][precision] = entry | extra


def _without_files(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "files"}


def _calibration_set(fp32: GraphSet, calib: str | Path | None, calib_synthetic: int | None,
                     progress: bool) -> CalibrationSet:
    if calib is not None:
        return folder_faces(calib, int(fp32.manifest.data["input_size"]))
    n = calib_synthetic or DEFAULT_CALIB_SYNTHETIC
    with tqdm(total=n, desc="calibration: drawing faces", unit="face", disable=None if progress else True) as bar:
        return synthetic_faces(fp32, n, seed=CALIB_SEED, on_chunk=bar.update)


def _check_patterns(fp32: GraphSet, keep_fp: Sequence[str]) -> None:
    """A ``--keep-fp`` pattern that matches no convolution of any INT8 graph is a typo: say so now."""
    if not keep_fp:
        return
    matched: set[str] = set()
    examples: list[str] = []
    for stage in INT8_STAGES:
        model = load_graph(fp32.paths[stage], load_weights=False)
        matched |= {p for p, names in match_nodes(model, keep_fp).items() if names}
        examples += [n.name for n in model.graph.node if n.op_type == "Conv"][:1]
    missing = [p for p in keep_fp if p not in matched]
    if missing:
        raise ExportError(f"--keep-fp {' '.join(missing)} matches no convolution of the "
                          f"{' or '.join(INT8_STAGES)} graph; give an op type (Conv, ConvTranspose) or part of "
                          f"a node name, e.g. {', '.join(examples)} (see the operators in {MANIFEST})")
