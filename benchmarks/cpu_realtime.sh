#!/usr/bin/env bash
# Issue 13's figures on the CPU: ONNX Runtime FP32 against the new INT8 form (QOperator, picked on
# the CPU provider), per stage at batch 1, and whole 640x480 one-face frames with 1 and 2 in flight
# (fps, latency p50/p99). PyTorch FP32 runs too (the bench's baseline). Run it under the heavy lock
# on a shared machine; bench.md records the load average and the CPU's INT8 features.
#
#   bash benchmarks/cpu_realtime.sh random:ffhq256 out/bench/cpu_ffhq256
#   bash benchmarks/cpu_realtime.sh faces64 out/bench/cpu_faces64 --iters 20 --video-frames 100
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-random:ffhq256}
out=${2:-out/bench/cpu_ffhq256}
shift 2 || true
exec anonymixer bench --model "$model" --backends ort --precisions fp32,int8 --batch 1 --inflight 1,2 \
    --warmup 1 --iters 3 --video-frames 10 --calib-synthetic 8 --out "$out" "$@"
