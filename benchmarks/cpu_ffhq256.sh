#!/usr/bin/env bash
# README's "Benchmarks" table: random:ffhq256 on the CPU, PyTorch eager against ONNX Runtime
# FP32/FP16/INT8, one run. Writes out/bench/cpu_ffhq256/{bench.json,bench.md,bench.png} (and the
# ONNX export under onnx/, reused by later runs). About 15 minutes on a 2-core CPU, most of it the
# first export; run it on an otherwise idle machine (bench.md shows the load average).
#
#   bash benchmarks/cpu_ffhq256.sh [more anonymixer bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
exec anonymixer bench --model random:ffhq256 --backends torch,ort --precisions fp32,fp16,int8 \
    --batch 1,2 --inflight 1,2 --warmup 1 --iters 3 --out out/bench/cpu_ffhq256 "$@"
