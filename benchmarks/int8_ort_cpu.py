"""ONNX Runtime CPU INT8: the Q/DQ (TensorRT) form against the QOperator form, U8S8 against S8S8.

    python benchmarks/int8_ort_cpu.py [--onnx out/bench/cpu_ffhq256/onnx] [--stages generator,encoder]

`anonymixer calibrate` writes two INT8 forms: Q/DQ on each convolution's inputs (TensorRT's
form, ``<stage>.int8.onnx``), which ONNX Runtime's CPU provider runs as float convolutions plus the
Q/DQ work, and the QOperator form (``<stage>.int8-ort.onnx``, ``anonymixer.export.int8_ort``), which
it runs as integer ``QLinearConv``. This script quantizes the FP32 graphs with that module in both
activation types (U8S8, the export's choice, and S8S8), calibrated on faces drawn by the model,
and times them beside FP32 (and the export's own INT8 graphs when the folder has them) on ORT CPU
with ``OrtBackend``'s session options. Prints a Markdown block with the CPU's INT8 features.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def session(path: Path):
    import onnxruntime as ort

    from anonymixer.runtime.ort import session_options

    return ort.InferenceSession(str(path), session_options(None), providers=["CPUExecutionProvider"])


def time_session(sess, feeds: dict, warmup: int, iters: int) -> tuple[list[float], np.ndarray]:
    out = None
    for _ in range(warmup):
        out = sess.run(None, feeds)[0]
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        out = sess.run(None, feeds)[0]
        samples.append((time.perf_counter() - start) * 1000.0)
    assert out is not None
    return samples, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default="out/bench/cpu_ffhq256/onnx", help="export folder with fp32 and int8 graphs")
    parser.add_argument("--stages", default="generator,encoder")
    parser.add_argument("--calib", type=int, default=8, help="calibration faces for the QOperator graphs")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args(argv)

    from anonymixer.bench.machine import cpu_model, int8_features, load_average
    from anonymixer.bench.stats import summarize
    from anonymixer.calibration import GraphSet, stage_feeds, synthetic_faces
    from anonymixer.export.accuracy import psnr
    from anonymixer.export.graphfile import relative_error
    from anonymixer.export.int8_ort import quantize_int8_ort
    from anonymixer.runtime.manifest import ExportManifest

    folder = Path(args.onnx)
    manifest = ExportManifest(folder)
    fp32 = GraphSet(folder, "fp32", verify=False)
    calib = stage_feeds(fp32, synthetic_faces(fp32, args.calib, seed=1).faces, seed=2)
    probe = stage_feeds(fp32, synthetic_faces(fp32, 1, seed=99).faces, seed=98)   # not among the calibration faces
    fp32.close()
    load_start = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in [s.strip() for s in args.stages.split(",") if s.strip()]:
            name = {"encoder": "face", "generator": "w_prot"}[stage]
            external = bool(manifest.data["graphs"][stage]["fp32"].get("external_data"))
            forms = {"fp32": manifest.graph(stage, "fp32").path}
            if "int8" in manifest.precisions(stage):
                forms["int8 Q/DQ (TensorRT form)"] = manifest.graph(stage, "int8").path
            for activations in ("u8", "s8"):
                path = Path(tmp) / f"{stage}.{activations}.onnx"
                start = time.perf_counter()
                quantize_int8_ort(manifest.graph(stage, "fp32").path, path, {name: calib[stage][name]},
                                  external_data=external, activations=activations)
                print(f"{stage}: QOperator {activations.upper()}S8 in {time.perf_counter() - start:.0f} s", flush=True)
                forms[f"int8 QOperator {activations.upper()}S8"] = path
            feeds = {name: probe[stage][name]}
            results = {}
            for label, path in forms.items():
                sess = session(path)
                samples, out = time_session(sess, feeds, args.warmup, args.iters)
                results[label] = (summarize(samples, 1, "perf_counter"), out)
                del sess
            ref_ms, ref_out = results["fp32"][0]["p50_ms"], results["fp32"][1]
            for label, (item, out) in results.items():
                quality = f"{psnr(out, ref_out):.1f} dB" if stage == "generator" and label != "fp32" else ""
                rows.append(f"| {stage} | {label} | {item['p50_ms']:.1f} | {ref_ms / item['p50_ms']:.2f}x | "
                            f"{relative_error(out, ref_out):.1e} | {quality} |")
    lines = [f"### `int8_ort_cpu.py` ({datetime.date.today()}, {cpu_model()}, ORT CPU)", "",
             f"`{manifest.data['model']['spec']}`; batch 1, {args.warmup} warm-up + {args.iters} timed runs; "
             f"QOperator calibrated on {args.calib} faces drawn by the model; CPU INT8 features: {int8_features()}; "
             f"load average {load_start} at start, {load_average()} at end.", "",
             "| graph | INT8 form | p50 ms | vs fp32 | relative error vs fp32 | image PSNR vs fp32 |",
             "|---|---|---|---|---|---|", *rows]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
