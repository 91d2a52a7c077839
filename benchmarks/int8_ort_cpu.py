"""Why the exported INT8 graphs are no faster than FP32 on ONNX Runtime's CPU provider, measured.

    python benchmarks/int8_ort_cpu.py [--onnx out/bench/cpu_ffhq256/onnx] [--stages generator,encoder]

`anonymixer export --precision int8` writes the form TensorRT consumes: Q/DQ pairs on every
convolution's *inputs*, none on its output. ONNX Runtime's CPU provider turns ``DQ -> Conv -> Q``
into an integer ``QLinearConv``, so without the output ``Q`` it dequantizes and runs the float
convolution (plus the Q/DQ work). This script quantizes the same FP32 graphs a second way, with
ONNX Runtime's QOperator format (``QLinearConv``: int8 weights, uint8 activations, per-channel),
calibrated on the same kind of faces (drawn by the model), and times the three side by side on
ORT CPU with the session options of ``OrtBackend``. It does not change the export: it shows what
an ORT-CPU-specific INT8 form would reach, and at what accuracy. Prints a Markdown block.
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

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # as OrtBackend does
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from anonymixer.bench.machine import cpu_model, load_average
    from anonymixer.bench.stats import summarize
    from anonymixer.calibration import GraphSet, stage_feeds, synthetic_faces
    from anonymixer.export.graphfile import relative_error
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

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.items = iter([{name: calib[stage][name][i:i + 1]} for i in range(args.calib)])

                def get_next(self):
                    return next(self.items, None)

            qop = Path(tmp) / f"{stage}.qoperator.onnx"
            start = time.perf_counter()
            quantize_static(str(manifest.graph(stage, "fp32").path), str(qop), Reader(),
                            quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            use_external_data_format=stage == "encoder")
            quantize_s = time.perf_counter() - start
            feeds = {name: probe[stage][name]}
            results = {}
            for label, path in (("fp32", manifest.graph(stage, "fp32").path),
                                ("int8 (export: Q/DQ, TensorRT form)", manifest.graph(stage, "int8").path),
                                ("int8 (QOperator QLinearConv)", qop)):
                sess = session(path)
                samples, out = time_session(sess, feeds, args.warmup, args.iters)
                results[label] = (summarize(samples, 1, "perf_counter"), out)
                del sess
            ref_ms, ref_out = results["fp32"][0]["p50_ms"], results["fp32"][1]
            for label, (item, out) in results.items():
                rows.append(f"| {stage} | {label} | {item['p50_ms']:.0f} | {ref_ms / item['p50_ms']:.2f}x | "
                            f"{relative_error(out, ref_out):.1e} |")
            print(f"{stage}: quantized to QOperator in {quantize_s:.0f} s", flush=True)
    lines = [f"### `int8_ort_cpu.py` ({datetime.date.today()}, {cpu_model()}, ORT CPU)", "",
             f"`{manifest.data['model']['spec']}`; batch 1, {args.warmup} warm-up + {args.iters} timed runs; "
             f"QOperator calibrated on {args.calib} faces drawn by the model; load average {load_start} at start, "
             f"{load_average()} at end.", "",
             "| graph | INT8 form | p50 ms | vs fp32 | relative error vs fp32 |", "|---|---|---|---|---|", *rows]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
