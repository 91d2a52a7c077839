"""torch -> ONNX for the four graphs, validated against PyTorch, then the FP16/INT8 variants.

    manifest = export_onnx("random:tiny", "export/", precisions=("fp32", "fp16", "int8"))

Each stage is built by ``runtime.torch.build_stage_modules`` (the torch backend's own builder),
traced with the TorchScript exporter (``dynamo=False``: one plain graph, dynamic batch through
``dynamic_axes``), simplified with onnxslim and checked: ``onnx.checker`` full check, no custom
domain, no ScatterND, Conv weights are initializers, and ONNX Runtime CPU matches PyTorch at batch 1
and 3 within ``PARITY_TOLERANCE`` (relative error). The unsimplified graph is run too, to show that
simplification changed nothing. The folder layout and the manifest are ``export.layout``'s.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import onnxslim
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import __version__, codestats
from ..atomic import prepare_folder
from ..errors import ExportError
from ..digest import sha256_file
from ..keymaterial import KEY_INPUTS, key_material
from ..keys import Key
from ..models.bundle import ModelBundle, bundle_digest
from ..runtime.base import STAGE_IO
from ..runtime.torch import StageModules, build_stage_modules
from .graphfile import (EXTERNAL_DATA_MIN_BYTES, check_graph, check_portable, graph_entry, load_graph,
                        open_session, relative_error, run_session, save_graph, weight_bytes)
from .layout import (GRAPHS, MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, PRECISIONS, SIGNATURE_SUFFIX, graph_filename,
                     write_manifest)
from .precision import add_precisions, check_calibration_options, file_table

PARITY_TOLERANCE = 1e-5
PARITY_SEED = 0
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear
MAX_OPSET = 20  # TensorRT 10.x's ONNX parser (TensorRT 11 reads up to 25): every export must build there


def export_onnx(model: str | ModelBundle, out_dir: str | Path, precisions: Sequence[str] = ("fp32",),
                output_resolution: int | None = None, layer_mask: tuple[int, ...] | None = None,
                mixer_mode: str | None = None, truncation_psi: float | None = None, opset: int = 17,
                project_rank: int | None = None, radius_guard: bool = True,
                calib: str | Path | None = None, calib_synthetic: int | None = None,
                calib_method: str = "minmax", keep_fp: Sequence[str] = (), progress: bool = True,
                external_data: bool | None = None, int8_deconv: str = "float") -> dict[str, Any]:
    """Export encoder, mapping, mixer and generator of ``model`` (SPEC or bundle) to ``out_dir``.

    Writes ``<stage>.onnx`` (FP32) for every stage, then the ``fp16``/``int8`` variants asked for
    (see ``export.precision.add_precisions`` for ``calib*``/``keep_fp``/``int8_deconv``), ``accuracy.json`` when a
    reduced precision is written, and ``manifest.json``; returns the manifest (``export.layout``).
    Graph I/O: ``face (B, 3, 256, 256)``, ``z (B, D)``, ``w_real/w_key/w_prot (B, L, D)``,
    ``image (B, 3, R, R)``, all float32; the mixer's key inputs ``key_matrix (D, D)`` and
    ``key_offset (L, D)`` have no batch axis. The model's code statistics go to ``code_stats.npz``.
    ``external_data`` forces (True) or forbids (False) external weights; by default a stage whose
    FP32 weights exceed ``EXTERNAL_DATA_MIN_BYTES`` gets them. Graph files already in ``out_dir``
    are replaced. Raises ``ExportError`` when a graph fails a check (the manifest is still written,
    with the numbers, so the failure can be inspected).
    """
    wanted = normalize_precisions(precisions)
    if not MIN_OPSET <= opset <= min(MAX_OPSET, onnx.defs.onnx_opset_version()):
        raise ExportError(f"opset {opset} is not supported: choose {MIN_OPSET} to "
                          f"{min(MAX_OPSET, onnx.defs.onnx_opset_version())} (default 17; TensorRT 10.x parses "
                          f"up to {MAX_OPSET})")
    if "int8" in wanted:
        check_calibration_options(calib, calib_synthetic, calib_method, int8_deconv)
    try:
        built = build_stage_modules(model, output_resolution, layer_mask, mixer_mode, truncation_psi,
                                    project_rank, radius_guard)
    except ValueError as exc:  # e.g. an output resolution that is not a power of two
        raise ExportError(str(exc)) from None
    out = Path(out_dir)
    prepare_folder(out)
    remove_export_files(out)
    manifest = new_manifest(built, model, opset)
    codestats.save(built.code_stats, out)
    failures: list[str] = []
    with torch.no_grad():  # not inference_mode: these tensors are traced by the exporter later
        feeds, refs = reference_run(built, batch=3, seed=PARITY_SEED)
    with tempfile.TemporaryDirectory(dir=out, prefix=".raw-") as raw_dir, \
            tqdm(total=len(GRAPHS) * 4, desc="export fp32", unit="step", disable=None if progress else True) as bar:
        for stage in GRAPHS:
            bar.set_postfix_str(stage)
            entry = export_stage(stage, built.modules[stage], feeds[stage], refs[stage], Path(raw_dir), out,
                                 opset, external_data, bar)
            manifest["graphs"][stage] = {"fp32": entry}
            if not entry["parity"]["passed"]:
                failures.append(f"{stage}: relative error {entry['parity']['max']:.2e} "
                                f"> {PARITY_TOLERANCE:.0e} against PyTorch")
    manifest["files"] = file_table(out, manifest)
    write_manifest(out, manifest)
    if failures:
        raise ExportError(f"{out}: parity check failed: {'; '.join(failures)}")
    del built, feeds, refs  # a gigabyte of torch weights that FP16/INT8 do not need
    if len(wanted) > 1:
        manifest = add_precisions(out, [p for p in wanted if p != "fp32"], calib=calib,
                                  calib_synthetic=calib_synthetic, calib_method=calib_method,
                                  keep_fp=keep_fp, progress=progress, int8_deconv=int8_deconv)
    return manifest


def normalize_precisions(precisions: Sequence[str] | str) -> list[str]:
    """``"fp16,int8"`` or a list -> ``["fp32", "fp16", "int8"]`` (fp32 always, layout order)."""
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    wanted = {p.strip().lower() for p in items if p.strip()}
    unknown = sorted(wanted - set(PRECISIONS))
    if unknown:
        raise ExportError(f"unknown precision {', '.join(unknown)}: choose from {', '.join(PRECISIONS)}")
    return ["fp32"] + [p for p in PRECISIONS[1:] if p in wanted]


def remove_export_files(out: Path) -> None:
    """Delete graph files, manifest and accuracy report that a previous export left in ``out``."""
    names = [MANIFEST, MANIFEST + SIGNATURE_SUFFIX, "accuracy.json", codestats.STATS_FILE]
    for stage in GRAPHS:
        for precision in PRECISIONS:
            names += [graph_filename(stage, precision), graph_filename(stage, precision) + ".data"]
    for name in names:
        (out / name).unlink(missing_ok=True)


def reference_run(built: StageModules, batch: int, seed: int) -> tuple[dict[str, dict[str, torch.Tensor]],
                                                                       dict[str, torch.Tensor]]:
    """Plausible inputs for every stage and the torch outputs on them (``batch`` samples, one pass each).

    ``z (B, D) ~ N(0, I) -> mapping -> w``; the generator reads ``w`` with the key layers of the
    next sample mixed in (so the W+ layers differ, as ``w_prot``'s do) and draws faces, which are
    resized for the encoder; the mixer mixes ``w_real`` with the key material of a fixed test key
    (``KeyMaterial`` for the mixer's mode). Returns ``(inputs, outputs)``, keyed by stage.
    """
    m = built.modules
    z = torch.randn(batch, built.info.style_dim, generator=torch.Generator().manual_seed(seed))
    w = m["mapping"](z)
    select = built.modules["mixer"].get_buffer("select")
    w_mixed = torch.where(select, w.roll(1, dims=0), w).contiguous()
    image = m["generator"](w_mixed)
    size = built.info.input_size
    face = F.interpolate(image.clamp(-1, 1), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).contiguous()
    w_real = m["encoder"](face)
    material = key_material(Key(hashlib.sha256(b"anonymixer export parity key").digest()), b"parity",
                            built.mixer_mode, built.code_stats, built.info.n_latent,
                            mapping=TorchMapping(m["mapping"]), rank=built.info.project_rank)
    key_feeds = {name: torch.from_numpy(array) for name, array in material.feeds().items()}
    inputs = {"encoder": {"face": face}, "mapping": {"z": z}, "mixer": {"w_real": w_real, **key_feeds},
              "generator": {"w_prot": w_mixed}}
    outputs = {"encoder": w_real, "mapping": w, "mixer": m["mixer"](w_real, *key_feeds.values()), "generator": image}
    return inputs, outputs


class TorchMapping:
    """The mapping module behind the runner protocol, for ``key_material`` (NumPy in and out)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w_key": self.module(torch.from_numpy(feeds["z"])).detach().numpy()}


def export_stage(stage: str, module: nn.Module, feeds: dict[str, torch.Tensor], ref: torch.Tensor, raw_dir: Path,
                 out: Path, opset: int, external_data: bool | None, bar: tqdm) -> dict[str, Any]:
    """Trace, simplify, check and compare one stage; return its manifest entry.

    ``feeds`` are the stage's named inputs at batch 3 and ``ref`` the torch output on them.
    """
    input_names, output_names = STAGE_IO[stage]
    raw_path = raw_dir / f"{stage}.onnx"
    # Trace at batch 2 so that no axis is specialised to 1 by accident; key inputs have no batch axis.
    example = tuple(feeds[n] if n in KEY_INPUTS else feeds[n][:2] for n in input_names)
    axes = {n: {0: "batch"} for n in input_names + output_names if n not in KEY_INPUTS}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy-exporter deprecation and tracer notes
            torch.onnx.export(module, example, str(raw_path), dynamo=False, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True)
    except Exception as exc:
        raise ExportError(f"{stage}: torch.onnx.export failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    bar.update(1)

    raw = load_graph(raw_path)
    interface = {"input": list(raw.graph.input), "output": list(raw.graph.output)}
    # onnxslim's own shape inference re-serialises the whole model a dozen times (40 s for e4e);
    # one pass of onnx's, with data propagation, lets it fold the same shape arithmetic.
    inferred = onnx.shape_inference.infer_shapes(raw, data_prop=True)
    del raw  # the e4e encoder is a gigabyte: hold as few copies as possible
    slim = onnxslim.slim(inferred, no_shape_infer=True)
    del inferred
    if not isinstance(slim, onnx.ModelProto):
        raise ExportError(f"{stage}: onnxslim returned no model")
    # The interface is the exporter's: restore it after shape inference, and drop inferred
    # intermediate shapes with it.
    for field, values in interface.items():
        del getattr(slim.graph, field)[:]
        getattr(slim.graph, field).extend(values)
    del slim.graph.value_info[:]
    for dim, size in zip(list(slim.graph.output[0].type.tensor_type.shape.dim)[1:], ref.shape[1:]):
        dim.dim_value = int(size)  # the tracer leaves some static output sizes symbolic
    slim.producer_name, slim.producer_version = "anonymixer", __version__
    check_portable(slim, stage)
    external = weight_bytes(slim) > EXTERNAL_DATA_MIN_BYTES if external_data is None else external_data
    path = out / graph_filename(stage)
    files = save_graph(slim, path, external)
    del slim
    bar.update(1)

    check_graph(path)
    bar.update(1)

    arrays = {n: t.numpy() for n, t in feeds.items()}
    parity = measure_parity(open_session(path), open_session(raw_path), arrays, ref.numpy())
    bar.update(1)
    entry = graph_entry(out, files, load_graph(path, load_weights=False))
    entry["parity"] = parity
    return entry


def measure_parity(session: ort.InferenceSession, raw_session: ort.InferenceSession,
                   feeds: dict[str, np.ndarray], ref: np.ndarray) -> dict[str, Any]:
    """Relative errors of ORT CPU against PyTorch (``ref``, batch 3) at batch 1 and 3, and of the
    simplified graph against the unsimplified one (batch 1)."""
    first = {n: a if n in KEY_INPUTS else a[:1] for n, a in feeds.items()}
    out_1 = run_session(session, first)
    result: dict[str, Any] = {"reference": f"torch {torch.__version__} cpu",
                              "runtime": f"onnxruntime {ort.__version__} cpu",
                              "batch_1": relative_error(out_1, ref[:1]),
                              "batch_3": relative_error(run_session(session, feeds), ref),
                              "slim_vs_unsimplified": relative_error(out_1, run_session(raw_session, first))}
    result["max"] = max(result["batch_1"], result["batch_3"])
    result["tolerance"] = PARITY_TOLERANCE
    result["passed"] = bool(result["max"] <= PARITY_TOLERANCE)
    return result


def new_manifest(built: StageModules, model: str | ModelBundle, opset: int) -> dict[str, Any]:
    """Everything of the manifest but the graphs (see ``export.layout``)."""
    bundle, info = built.bundle, built.info
    spec = model if isinstance(model, str) else None
    is_file = spec is not None and not spec.startswith("random:") and Path(spec).is_file()
    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "anonymixer_version": __version__,
        "opset": opset,
        "model": {"name": info.name, "description": info.description, "is_random": info.is_random,
                  "spec": spec, "sha256": sha256_file(spec) if is_file and spec else None,
                  "weights_sha256": bundle_digest(bundle), "sources": bundle.sources,
                  "config": bundle.config.to_dict()},
        "input_size": info.input_size, "style_dim": info.style_dim, "n_latent": info.n_latent,
        "output_resolution": info.output_resolution, "layer_mask": list(built.layer_mask),
        "crop_template": [list(p) for p in info.crop_template] if info.crop_template else None,
        "mixer_mode": built.mixer_mode, "truncation_psi": built.truncation_psi,
        "project_rank": built.info.project_rank, "radius_guard": built.radius_guard,
        "code_stats": codestats.STATS_FILE,
        "tools": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                  "onnxslim": onnxslim.__version__},
        "external_data_min_bytes": EXTERNAL_DATA_MIN_BYTES,
        "graphs": {},
    }
