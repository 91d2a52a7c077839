"""Export check for the full-size model: `anonymixer export --model random:ffhq1024` with its parity check.

    python benchmarks/export_ffhq1024.py [--precision fp32|fp16,int8] [--resolution 256] [--out DIR]

Not part of the test suite: on a 2-core CPU the FP32 export alone takes minutes and about 12 GB of
memory (the e4e encoder is about 1 GB of weights, held several times over by the exporter,
onnxslim and ONNX Runtime). It exports every stage, checks each FP32 graph against PyTorch at batch
1 and 3 (relative error <= 1e-5, as the tests do on the tiny model), optionally writes the FP16 and
INT8 graphs with their accuracy report, and prints a Markdown block for benchmarks/RESULTS.md
with the wall time, peak memory, file sizes and the numbers. Exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def markdown(manifest: dict, seconds: float, peak_gb: float, folder: Path) -> str:
    from anonymixer.export.layout import GRAPHS, PRECISIONS

    lines = [f"### `export_ffhq1024.py` ({datetime.date.today()}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPU cores)", "",
             f"`{manifest['model']['spec']}`, output {manifest['output_resolution']}, opset {manifest['opset']}: "
             f"**{seconds:.0f} s** wall, peak RSS {peak_gb:.1f} GB", "",
             "| graph | precision | size | vs torch, batch 1 / 3 | vs fp32 |", "|---|---|---|---|---|"]
    for stage in GRAPHS:
        for precision in PRECISIONS:
            entry = manifest["graphs"][stage].get(precision)
            if not entry:
                continue
            size = sum((folder / n).stat().st_size for n in [entry["file"], *entry["external_data"]])
            parity = entry.get("parity")
            torch_cell = f"{parity['batch_1']:.1e} / {parity['batch_3']:.1e}" if parity else ""
            error = entry.get("error_vs_fp32")
            error_cell = f"{error['relative_error']:.1e}" if error else ""
            lines.append(f"| {stage} | {precision} | {size / 1e6:.1f} MB | {torch_cell} | {error_cell} |")
    psnr = manifest.get("accuracy", {}).get("image_psnr_db", {})
    if psnr:
        lines += ["", "Image PSNR against FP32: " + ", ".join(f"{p} {v:.1f} dB" for p, v in psnr.items() if v)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:ffhq1024")
    parser.add_argument("--precision", default="fp32", help="comma-separated, e.g. fp16,int8")
    parser.add_argument("--resolution", type=int, default=None, help="stop the generator early, e.g. 256")
    parser.add_argument("--calib-synthetic", type=int, default=None, metavar="N")
    parser.add_argument("--out", default=None, help="export folder (default: a temporary one, deleted)")
    args = parser.parse_args()

    from anonymixer.errors import AnonymixerError
    from anonymixer.export.onnx import export_onnx
    from anonymixer.export.summary import summary

    with tempfile.TemporaryDirectory(prefix="export-ffhq1024-") as tmp:
        folder = Path(args.out or tmp)
        start = time.perf_counter()
        try:
            manifest = export_onnx(args.model, folder, precisions=args.precision.split(","),
                                   output_resolution=args.resolution, calib_synthetic=args.calib_synthetic)
        except AnonymixerError as exc:
            print(f"export_ffhq1024: FAILED: {exc}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
        print(summary(folder, manifest, seconds))
        print()
        print(markdown(manifest, seconds, peak_gb, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
