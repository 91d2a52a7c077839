"""The TensorRT device check behind ``python benchmarks/gpu_check.py --trt`` (needs a GPU and TensorRT).

For each model (random:tiny, random:ffhq256): export fp32/fp16/int8 graphs (ONNX Runtime CPU is the
reference), build the engines of each precision with ``anonymixer build``'s code, then run the
engines on the same inputs as ONNX Runtime runs the same graphs and record:
- image PSNR of the TensorRT pipeline against ONNX Runtime at the same precision (did TensorRT run
  what the graph says?) and against ONNX Runtime FP32 (what the precision costs);
- whether the mixer engine copied the real face's non-identity layers bit for bit, and the mapping
  engine's code against ONNX Runtime FP32 (the key path must be FP32 for every precision);
- build time, per-stage latency at batch 1 and encoder+mixer+generator throughput at ``--batch``.
Writes a Markdown table, appended to benchmarks/RESULTS.md unless ``--no-write``. Designed to finish
in under 10 minutes on a desktop GPU (ffhq256 export and builds dominate; a timing cache is reused).
"""

from __future__ import annotations

import datetime
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anonymixer.export.accuracy import psnr
from anonymixer.export.graphfile import relative_error

PRECISIONS = ("fp32", "fp16", "int8")
# Bounds a healthy engine meets (FP16/INT8 against the same-precision graph on ONNX Runtime CPU).
MIN_PSNR_SAME_GRAPH = {"fp32": 60.0, "fp16": 45.0, "int8": 30.0}
MAX_MAPPING_RELATIVE_ERROR = 1e-5


def mean_ms(run: Any, repeats: int) -> float:
    run()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats * 1e3


def check_model(spec: str, work: Path, batch: int, calib: int, checks: dict[str, bool]) -> list[dict[str, Any]]:
    from anonymixer.calibration import GraphSet, stage_feeds
    from anonymixer.calibration.data import resize_faces
    from anonymixer.keymaterial import KEY_INPUTS
    from anonymixer.export.onnx import export_onnx
    from anonymixer.runtime.build import build_engines
    from anonymixer.runtime.trt import TrtBackend

    onnx_dir = work / spec.replace(":", "_")
    start = time.perf_counter()
    manifest = export_onnx(spec, onnx_dir, precisions=PRECISIONS, calib_synthetic=calib, progress=False)
    print(f"{spec}: exported in {time.perf_counter() - start:.0f} s")
    layers = [i for i in range(int(manifest["n_latent"])) if i not in set(manifest["layer_mask"])]
    rng = np.random.default_rng(0)
    fp32 = GraphSet(onnx_dir, "fp32")
    z = rng.standard_normal((batch, int(manifest["style_dim"]))).astype(np.float32)
    faces = resize_faces(fp32.run("generator", {"w_prot": fp32.run("mapping", {"z": z})}),
                         int(manifest["input_size"]))
    feeds = stage_feeds(fp32, faces)          # one test key's material, in the folder's mixer mode
    key = {name: feeds["mixer"][name] for name in KEY_INPUTS}
    w_key = fp32.run("mapping", {"z": z[:1]})
    reference = {"fp32": fp32}
    rows = []
    for precision in PRECISIONS:
        graphs = reference.setdefault(precision, GraphSet(onnx_dir, precision))
        ort_w_real = graphs.run("encoder", {"face": faces})
        ort_image = graphs.run("generator", {"w_prot": graphs.run("mixer", {"w_real": ort_w_real, **key})})
        fp32_image = fp32.run("generator", {"w_prot": fp32.run("mixer", {"w_real": fp32.run("encoder", {"face": faces}),
                                                                          **key})})
        engines = work / f"{onnx_dir.name}-engines-{precision}"
        start = time.perf_counter()
        build_engines(onnx_dir, engines, precision=precision, batch=(1, batch, batch),
                      timing_cache=work / "timing.cache", report=lambda line: None)
        build_s = time.perf_counter() - start
        with TrtBackend(engines, precision=precision) as backend:
            stage = backend.stage
            w_real = stage("encoder").run({"face": faces})["w_real"]
            w_prot = stage("mixer").run({"w_real": w_real, **key})["w_prot"]
            image = stage("generator").run({"w_prot": w_prot})["image"]
            code = stage("mapping").run({"z": z[:1]})["w_key"]
            copied = bool(np.array_equal(w_prot[:, layers], w_real[:, layers]))
            mapping_error = relative_error(code, w_key)
            latency = {s: mean_ms(lambda s=s, f=f: stage(s).run(f), 10) for s, f in (
                ("encoder", {"face": faces[:1]}), ("mixer", {"w_real": w_real[:1], **key}),
                ("generator", {"w_prot": w_prot[:1]}))}
            frame_ms = mean_ms(lambda: stage("generator").run({"w_prot": stage("mixer").run(
                {"w_real": stage("encoder").run({"face": faces})["w_real"], **key})["w_prot"]}), 5)
        same, vs_fp32 = psnr(image, ort_image), psnr(image, fp32_image)
        name = f"{spec} {precision}"
        checks[f"{name}: engine vs ONNX Runtime {precision} PSNR {same:.1f} dB >= {MIN_PSNR_SAME_GRAPH[precision]}"] = (
            same >= MIN_PSNR_SAME_GRAPH[precision])
        checks[f"{name}: mixer copies the non-identity layers bit for bit"] = copied
        checks[f"{name}: mapping (FP32 engine) vs ONNX Runtime FP32, rel. error {mapping_error:.1e}"] = (
            mapping_error <= MAX_MAPPING_RELATIVE_ERROR)
        rows.append({"model": spec, "precision": precision, "build_s": build_s, "psnr_same": same,
                     "psnr_fp32": vs_fp32, "ort_psnr_fp32": psnr(ort_image, fp32_image), "latency_ms": latency,
                     "faces_per_s": batch / frame_ms * 1e3})
        print(f"{name}: built in {build_s:.0f} s, PSNR vs ORT {precision} {same:.1f} dB, vs FP32 {vs_fp32:.1f} dB")
    for graphs in reference.values():
        graphs.close()
    return rows


def table(rows: list[dict[str, Any]], gpu: Any, versions: str, batch: int) -> str:
    def db(value: float) -> str:
        return "identical" if math.isinf(value) else f"{value:.1f}"

    lines = [f"\n### TensorRT on {gpu.name}, {datetime.date.today().isoformat()} (benchmarks/gpu_check.py --trt)\n",
             f"{versions}; compute capability {gpu.compute_capability}; random weights (pipeline and latency "
             f"only); throughput at batch {batch}\n",
             "| model | precision | build s | PSNR vs ORT same precision (dB) | PSNR vs ORT FP32 (dB) | "
             "ORT's own PSNR vs FP32 (dB) | encoder ms | mixer ms | generator ms | faces/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = r["latency_ms"]
        lines.append(f"| {r['model']} | {r['precision']} | {r['build_s']:.0f} | {db(r['psnr_same'])} | "
                     f"{db(r['psnr_fp32'])} | {db(r['ort_psnr_fp32'])} | {ms['encoder']:.2f} | {ms['mixer']:.3f} | "
                     f"{ms['generator']:.2f} | {r['faces_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def run_trt_check(models: list[str], batch: int, calib: int, write: Path | None) -> int:
    """The whole check; returns the exit code (0 when there is nothing to check here)."""
    from anonymixer.errors import AnonymixerError
    from anonymixer.provenance import versions
    from anonymixer.runtime.cuda import binding, device_info
    from anonymixer.runtime.engines import require_tensorrt

    try:
        trt_version = require_tensorrt()
        gpu = device_info(0)
    except AnonymixerError as exc:
        print(f"gpu_check --trt: nothing to check on this machine ({exc})")
        return 0
    checks: dict[str, bool] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="anonymixer-trt-check-") as tmp:
        for spec in models:
            rows += check_model(spec, Path(tmp), batch, calib, checks)
    about = (f"TensorRT {trt_version}, {binding().name}, CUDA driver {gpu.driver_version}, "
             + ", ".join(f"{k} {v}" for k, v in versions(("onnxruntime", "torch", "numpy")).items()))
    text = table(rows, gpu, about, batch) + "\n" + "\n".join(
        f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in checks.items()) + "\n"
    print(text)
    if write is not None:
        with write.open("a", encoding="utf-8") as out:
            out.write(text)
        print(f"appended to {write}")
    return 0 if all(checks.values()) else 1
