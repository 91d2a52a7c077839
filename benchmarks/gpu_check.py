"""GPU check: the torch-CUDA backend and the cuda-python buffer/stream code, against the CPU reference.

    python benchmarks/gpu_check.py [--model random:ffhq256] [--batch 4] [--frames 16]
    python benchmarks/gpu_check.py --trt      # TensorRT engines vs ONNX Runtime (benchmarks/trt_check.py)

Needs PyTorch with CUDA and cuda-python (no TensorRT, no onnxruntime-gpu). It checks, on the GPU:
1. the torch backend on CUDA against the torch backend on the CPU (TF32 off, so both are fp32);
2. ``Protector.protect_tensor_many`` on CUDA streams with 1 and 3 frames in flight: same results,
   in input order, and the throughput;
3. ``runtime.cuda``: pinned/device buffers, async copies host->device->device->host, events,
   CUDA graph capture and replay;
4. ``runtime.stream.DevicePipeline`` (the TensorRT backend's scheduler) with the model's torch
   modules as stages, reading and writing cuda-python device buffers on each slot's stream, with
   1 and 3 frames in flight: against the CPU reference, and the throughput.
It prints a Markdown block for benchmarks/RESULTS.md and exits 1 if a check failed. Without a CUDA
device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOLERANCE_VS_CPU = 1e-3      # fp32 GPU vs fp32 CPU through a deep network
TOLERANCE_SAME_GPU = 1e-5    # the same GPU, different streams / entry points


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


class CudaArray:
    """A cuda-python device buffer seen by PyTorch (``__cuda_array_interface__``, no copy)."""

    def __init__(self, ptr: int, shape: tuple[int, ...]) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (ptr, False), "strides": None,
                                         "version": 3}


def timed_stream(run: Callable[[Iterable[np.ndarray], int], Iterable[np.ndarray]], frames: list[np.ndarray],
                 inflight: int) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    out = list(run(frames, inflight))
    return out, time.perf_counter() - start


def check_buffers(checks: dict[str, bool]) -> None:
    """Round trip through pinned and device buffers on a stream, events, CUDA graph replay."""
    from anonymixer.runtime.cuda import CudaGraph, DeviceBuffer, Event, PinnedBuffer, Stream, copy_async

    n = 1 << 20
    data = np.random.default_rng(0).normal(size=n).astype(np.float32)
    host_in, host_out = PinnedBuffer(data.nbytes), PinnedBuffer(data.nbytes)
    dev_a, dev_b = DeviceBuffer(data.nbytes), DeviceBuffer(data.nbytes)
    stream, start, end = Stream(), Event(), Event()
    host_in.view(data.shape)[...] = data
    start.record(stream)
    copy_async(dev_a, host_in, data.nbytes, stream)
    copy_async(dev_b, dev_a, data.nbytes, stream)
    copy_async(host_out, dev_b, data.nbytes, stream)
    end.record(stream)
    end.synchronize()
    checks["pinned -> device -> device -> pinned round trip"] = bool(np.array_equal(host_out.view(data.shape), data))
    checks["events: elapsed time measured"] = end.elapsed_ms(start) >= 0.0 and end.done()
    host_out.view(data.shape)[...] = 0

    def copies(s: Stream) -> None:
        copy_async(dev_b, dev_a, data.nbytes, s)
        copy_async(host_out, dev_b, data.nbytes, s)

    graph = CudaGraph(stream, copies)
    graph.launch(stream)
    stream.synchronize()
    checks["CUDA graph capture and replay"] = bool(np.array_equal(host_out.view(data.shape), data))
    graph.destroy()
    for buffer in (host_in, host_out, dev_a, dev_b):
        buffer.free()
    for event in (start, end):
        event.destroy()
    stream.destroy()


def device_pipeline_run(protector: Any, torch: Any) -> Callable[[Iterable[np.ndarray], int], Iterable[np.ndarray]]:
    """frames -> images through DevicePipeline, with the backend's torch modules as device stages."""
    from anonymixer.runtime.cuda import DeviceBuffer, PinnedBuffer, Stream, copy_async
    from anonymixer.runtime.stream import DevicePipeline, in_input_order

    info, stages = protector.info, protector.backend.stages
    shapes = {"face": (3, info.input_size, info.input_size), "w_real": (info.n_latent, info.style_dim),
              "w_key": (info.n_latent, info.style_dim), "w_prot": (info.n_latent, info.style_dim),
              "image": (3, info.output_resolution, info.output_resolution)}

    def stage(module: Any, inputs: tuple[str, ...], output: str) -> Callable[..., None]:
        def step(slot: int, buffers: dict[str, Any], stream: Any, batch: int) -> None:
            with torch.cuda.stream(torch.cuda.ExternalStream(stream.handle)), torch.inference_mode():
                args = [torch.as_tensor(CudaArray(buffers[n].ptr, (1 if n == "w_key" else batch, *shapes[n])),
                                        device="cuda") for n in inputs]
                target = torch.as_tensor(CudaArray(buffers[output].ptr, (batch, *shapes[output])), device="cuda")
                target.copy_(module(*args))
        return step

    steps = [("encoder", stage(stages["encoder"].module, ("face",), "w_real")),
             ("mixer", stage(stages["mixer"].module, ("w_real", "w_key"), "w_prot")),
             ("generator", stage(stages["generator"].module, ("w_prot",), "image"))]
    key = np.ascontiguousarray(protector.w_key, dtype=np.float32)
    key_buffer, key_host, key_stream = DeviceBuffer(key.nbytes), PinnedBuffer(key.nbytes), Stream()
    key_host.view(key.shape)[...] = key
    copy_async(key_buffer, key_host, key.nbytes, key_stream)
    key_stream.synchronize()

    def run(frames: Iterable[np.ndarray], inflight: int) -> Iterable[np.ndarray]:
        frames = list(frames)
        pipeline = DevicePipeline({n: shapes[n] for n in ("face", "w_real", "w_prot", "image")}, steps, inflight,
                                  max_batch=max(f.shape[0] for f in frames), shared={"w_key": key_buffer})
        return list(in_input_order(pipeline, frames, inflight))

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:ffhq256", help="model SPEC (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="faces per frame (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=16, help="frames per throughput run (default: %(default)s)")
    parser.add_argument("--trt", action="store_true",
                        help="instead: build tiny and ffhq256 TensorRT engines at fp32/fp16/int8, compare them with "
                             "ONNX Runtime (PSNR), time them, append the table to benchmarks/RESULTS.md")
    parser.add_argument("--models", default="random:tiny,random:ffhq256", help="--trt: models (default: %(default)s)")
    parser.add_argument("--calib-synthetic", type=int, default=8, help="--trt: INT8 calibration faces (default: 8)")
    parser.add_argument("--no-write", action="store_true", help="--trt: print the table, leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.trt:
        from trt_check import run_trt_check

        results = Path(__file__).resolve().parent / "RESULTS.md"
        return run_trt_check([m.strip() for m in args.models.split(",") if m.strip()], args.batch,
                             args.calib_synthetic, None if args.no_write else results)
    try:
        import torch
    except ImportError:
        print("gpu_check: no CUDA device: PyTorch is not installed; nothing to check")
        return 0
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device visible to PyTorch {torch.__version__}; nothing to check on this machine")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False   # compare fp32 with fp32
    torch.backends.cudnn.allow_tf32 = False
    from anonymixer.keys import Key
    from anonymixer.models.bundle import resolve_spec
    from anonymixer.runtime import Protector
    from anonymixer.runtime.cuda import device_info

    checks: dict[str, bool] = {}
    rows: list[tuple[str, int, float, str]] = []
    gpu = device_info(0)
    bundle = resolve_spec(args.model)
    key = Key(bytes(range(32)))
    cpu = Protector(bundle, key, device="cpu")
    gpu_protector = Protector(bundle, key, device="cuda")
    rng = np.random.default_rng(0)
    frames = [rng.uniform(-1, 1, size=(args.batch, 3, 256, 256)).astype(np.float32) for _ in range(args.frames)]
    reference = cpu.protect_tensor(frames[0])
    on_gpu = gpu_protector.protect_tensor(frames[0])
    error = relative_error(on_gpu, reference)
    checks[f"torch CUDA vs CPU (rel. error {error:.1e} <= {TOLERANCE_VS_CPU:g})"] = error <= TOLERANCE_VS_CPU
    per_frame = [gpu_protector.protect_tensor(f) for f in frames]   # also warms up cuDNN
    for inflight in (1, 3):
        out, seconds = timed_stream(gpu_protector.protect_tensor_many, frames, inflight)
        worst = max(relative_error(a, b) for a, b in zip(out, per_frame))
        checks[f"torch streams, {inflight} in flight: in order, same as protect_tensor ({worst:.1e})"] = (
            len(out) == len(frames) and worst <= TOLERANCE_SAME_GPU)
        rows.append(("torch CUDA backend (torch streams)", inflight, len(frames) * args.batch / seconds,
                     f"{relative_error(out[0], reference):.1e}"))
    check_buffers(checks)
    run = device_pipeline_run(gpu_protector, torch)
    run(frames[:3], 3)   # warm-up
    for inflight in (1, 3):
        out, seconds = timed_stream(run, frames, inflight)
        worst = max(relative_error(a, b) for a, b in zip(out, per_frame))
        checks[f"cuda-python DevicePipeline, {inflight} in flight: in order ({worst:.1e})"] = (
            len(out) == len(frames) and worst <= TOLERANCE_SAME_GPU)
        rows.append(("cuda-python buffers/streams + torch kernels (DevicePipeline)", inflight,
                     len(frames) * args.batch / seconds, f"{relative_error(out[0], reference):.1e}"))

    import cuda.bindings

    print(f"\n### {gpu.name}, {datetime.date.today().isoformat()} (benchmarks/gpu_check.py)\n")
    print(f"model {args.model} ({gpu_protector.info.output_resolution}px out), {args.frames} frames of "
          f"{args.batch} faces; torch {torch.__version__}, CUDA driver {gpu.driver_version}, "
          f"cuda-python {cuda.bindings.__version__}, compute capability {gpu.compute_capability}, TF32 off\n")
    print("| path | frames in flight | faces/s | rel. error vs CPU (frame 0) |")
    print("|---|---|---|---|")
    for path, inflight, rate, err in rows:
        print(f"| {path} | {inflight} | {rate:.1f} | {err} |")
    print()
    for name, ok in checks.items():
        print(f"- {'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
