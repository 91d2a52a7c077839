"""The 1024 generator stopped at 256 against the full 1024 generator, on PyTorch and ONNX Runtime.

    python benchmarks/generator_early_exit.py [--backends torch,ort] [--batch 1] [--warmup 1] [--iters 3]

Same seeded weights (``random:ffhq1024``'s generator) for both: the early-exit generator is the full
one with the skip-RGB output taken at 256 (``Generator(output_resolution=256)``). Each is timed on
the same W+ codes, ``warmup`` untimed then ``iters`` timed calls (wall clock, after warm-up), on
PyTorch eager (CPU) and on ONNX Runtime (CPU) with the generator exported the way
`anonymixer export` exports it (TorchScript exporter, opset 17, dynamic batch). MACs are counted
from the ONNX graphs (``anonymixer.bench.macs``). Prints a Markdown block for
benchmarks/RESULTS.md; ``--json FILE`` also writes every figure. Target (issue 6): early exit at
least 2.5x faster than the full generator on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 2.5


def export_generator(module, path: Path, style: tuple[int, int]) -> None:
    import torch

    example = torch.randn(2, *style)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["w_prot"], output_names=["image"],
                          dynamic_axes={"w_prot": {0: "batch"}, "image": {0: "batch"}}, opset_version=17,
                          do_constant_folding=True)


def time_calls(run, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,ort")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from anonymixer.bench.machine import cpu_model, describe_machine, versions
    from anonymixer.bench.macs import graph_macs
    from anonymixer.bench.stats import summarize
    from anonymixer.models.configs import ffhq1024
    from anonymixer.models.stylegan2 import Generator, make_generator

    cfg = ffhq1024().generator
    full = make_generator(cfg, seed=0).eval()
    early = Generator(cfg, output_resolution=256)
    early.load_state_dict(full.state_dict(), strict=True)
    early.eval()
    w = np.random.default_rng(0).normal(size=(args.batch, cfg.n_latent, cfg.style_dim)).astype(np.float32)
    machine = describe_machine("cpu")
    result: dict = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine, "versions": versions(), "batch": args.batch, "warmup": args.warmup,
                    "iters": args.iters, "generators": {}}
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        for name, module in (("full 1024", full), ("early exit 256", early)):
            path = Path(tmp) / f"{name.split()[0]}.onnx"
            export_generator(module, path, (cfg.n_latent, cfg.style_dim))
            entry: dict = {"macs_per_face": graph_macs(path).total, "backends": {}}
            if "torch" in backends:
                with torch.inference_mode():
                    x = torch.from_numpy(w)
                    entry["backends"]["torch"] = summarize(time_calls(lambda: module(x), args.warmup, args.iters),
                                                           args.batch, "perf_counter")
            if "ort" in backends:
                options = ort.SessionOptions()
                options.log_severity_level = 3
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                entry["backends"]["ort"] = summarize(time_calls(lambda: session.run(None, {"w_prot": w}),
                                                                args.warmup, args.iters), args.batch, "perf_counter")
                del session
            result["generators"][name] = entry
            print(f"{name}: " + ", ".join(f"{b} p50 {s['p50_ms']:.0f} ms" for b, s in entry["backends"].items()),
                  flush=True)
    machine["load_average_end"] = describe_machine("cpu")["load_average_start"]
    full_entry, early_entry = result["generators"]["full 1024"], result["generators"]["early exit 256"]
    lines = [f"### `generator_early_exit.py` ({result['created'][:10]}, {cpu_model()}, {machine['cores']} CPU cores)",
             "", f"Batch {args.batch}, {args.warmup} warm-up + {args.iters} timed calls; load average "
             f"{machine['load_average_start']} at start, {machine['load_average_end']} at end.", "",
             "| backend | full 1024: p50 ms / face | early exit 256: p50 ms / face | speed-up | target |",
             "|---|---|---|---|---|"]
    for backend in backends:
        a = full_entry["backends"][backend]["p50_ms"] / args.batch
        b = early_entry["backends"][backend]["p50_ms"] / args.batch
        result.setdefault("speedup", {})[backend] = a / b
        lines.append(f"| {backend} | {a:.0f} | {b:.0f} | **{a / b:.2f}x** | >= {TARGET}x |")
    lines += ["", f"MACs per face (ONNX graph): full {full_entry['macs_per_face'] / 1e9:.1f} G, early exit "
              f"{early_entry['macs_per_face'] / 1e9:.1f} G (ratio {full_entry['macs_per_face'] / early_entry['macs_per_face']:.2f})."]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
