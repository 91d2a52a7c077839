"""``anonymixer bench``: per-stage latency and throughput across backends and precisions, side by side.

One run measures every row (backend x precision) on the same machine, inputs and settings, so
that its ratios are fair: speed-up against PyTorch eager FP32, image PSNR against it, and the
fraction of the compute floor reached. Read it in the order it runs:

- ``measure``: the plan, the ONNX export, and each row measured (``BenchConfig``, ``run_bench``);
- ``inputs``: the aligned faces and the test frames with B faces; ``timers``: wall clock on the
  CPU, CUDA events on a GPU; ``stats``: percentiles and memory probes; ``machine``: what it ran on;
- ``macs``: multiply-accumulates counted from the ONNX graphs; ``peaks``: device peaks, the floor;
- ``compare``: per-face rates, speed-ups, PSNR, floor fractions; ``report``: JSON, Markdown, PNG.
"""
