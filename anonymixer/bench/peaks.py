"""Device peaks and the compute floor.

The floor of a face is the time its multiply-accumulates would take at the device's peak:
``floor_s = 2 * MACs / (peak TFLOPS * 1e12)`` (one MAC is two floating-point operations, or two
integer operations for INT8 TOPS). A row that runs a face in ``t`` seconds reaches ``floor_s / t``
of it. Real networks stay well below 1: memory traffic, small layers and launch overheads.

Table figures are **vendor peak, dense** (no 2:4 structured sparsity), in TFLOPS (TOPS for INT8),
for tensor cores where the precision has them. ``fp32`` rows are held against the TF32 tensor
peak where the GPU has one (cuDNN convolutions use TF32 by default in PyTorch and ONNX Runtime),
else against the FP32 CUDA-core peak. Sources, as we read them (check your own board's clocks):
NVIDIA's H100/H200, A100 and L4 datasheets; the Ada (RTX 4090, FP16 with FP32 accumulate) and
Ampere GA102 (RTX 3090) whitepapers; for Jetson Orin the Jetson AGX/NX/Nano module datasheets
list sparse INT8 TOPS for the GPU: dense is half, FP16 dense half of that again (Ampere tensor
cores), at the modules' original (non-"Super") maximum GPU clocks. Jetson Thor's datasheet gives
2070 FP4 TFLOPS sparse; the dense FP8/INT8 and FP16 figures here are derived from it (halved per
step), not quoted: treat them as estimates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BenchError


@dataclass(frozen=True)
class DevicePeak:
    """Dense peaks of one device in TFLOPS (INT8: TOPS); ``None`` where the device has no such path."""

    name: str
    fp32: float                # FP32 on CUDA cores (non-tensor)
    tf32: float | None         # TF32 tensor cores
    fp16: float                # FP16 tensor cores, FP32 accumulate where the vendor states both
    int8: float | None         # INT8 tensor cores
    source: str

    def tflops(self, precision: str) -> float:
        """The peak a row of ``precision`` is held against (fp32: TF32 where present)."""
        if precision == "fp32":
            return self.tf32 or self.fp32
        if precision == "fp16":
            return self.fp16
        if precision == "int8":
            return self.int8 or self.fp16
        raise BenchError(f"no peak for precision {precision!r}")


PEAKS: dict[str, DevicePeak] = {p.name: p for p in (
    DevicePeak("h100-sxm", 66.9, 494.7, 989.4, 1978.9, "NVIDIA H100 datasheet (SXM5)"),
    DevicePeak("h100-pcie", 51.2, 378.0, 756.0, 1513.0, "NVIDIA H100 datasheet (PCIe)"),
    DevicePeak("h200", 66.9, 494.7, 989.4, 1978.9, "NVIDIA H200 datasheet (SXM; same GH100 compute as H100 SXM)"),
    DevicePeak("a100", 19.5, 156.0, 312.0, 624.0, "NVIDIA A100 datasheet"),
    DevicePeak("l4", 30.3, 60.0, 121.0, 242.5, "NVIDIA L4 datasheet"),
    DevicePeak("rtx-4090", 82.6, 82.6, 165.2, 660.6, "NVIDIA Ada GPU architecture whitepaper"),
    DevicePeak("rtx-3090", 35.6, 35.6, 71.0, 284.0, "NVIDIA Ampere GA102 GPU architecture whitepaper"),
    DevicePeak("jetson-agx-orin-64gb", 5.3, 21.3, 42.5, 85.0,
               "Jetson AGX Orin datasheet: GPU 170 INT8 TOPS sparse, 1.3 GHz; dense derived"),
    DevicePeak("jetson-agx-orin-32gb", 3.33, 13.5, 27.0, 54.0,
               "Jetson AGX Orin datasheet: GPU 108 INT8 TOPS sparse, 930 MHz; dense derived"),
    DevicePeak("jetson-orin-nx-16gb", 1.88, 7.5, 15.0, 30.0,
               "Jetson Orin NX datasheet: GPU 60 INT8 TOPS sparse, 918 MHz; dense derived"),
    DevicePeak("jetson-orin-nano-8gb", 1.28, 5.0, 10.0, 20.0,
               "Jetson Orin Nano datasheet: GPU 40 INT8 TOPS sparse, 625 MHz; dense derived"),
    DevicePeak("jetson-thor", 8.1, None, 258.8, 517.5,
               "Jetson Thor datasheet: 2070 FP4 TFLOPS sparse; FP16/INT8 dense derived (estimates)"),
)}

# Words of CUDA device names (lower case) -> table entry; the first match wins ("l4" is not "l40s").
GPU_NAMES = (("h100 pcie", "h100-pcie"), ("h100", "h100-sxm"), ("h200", "h200"), ("a100", "a100"),
             ("l4", "l4"), ("4090", "rtx-4090"), ("3090", "rtx-3090"), ("thor", "jetson-thor"))


def find_peak(name: str) -> DevicePeak:
    """The table entry ``name`` (see ``PEAKS``); ``BenchError`` lists the names otherwise."""
    try:
        return PEAKS[name.lower()]
    except KeyError:
        raise BenchError(f"no peak table entry {name!r}: choose one of {', '.join(PEAKS)}, "
                         "or give the device's dense peak with --peak-tflops X") from None


def peak_for_gpu(gpu_name: str) -> DevicePeak | None:
    """The table entry of a CUDA device name (``torch.cuda.get_device_name()``), if we have one.

    Jetson Orin modules all report "Orin": pick the module with --peak-device, we cannot tell them apart.
    """
    lowered = gpu_name.lower()
    for needle, name in GPU_NAMES:
        if re.search(rf"\b{needle}\b", lowered):
            return PEAKS[name]
    return None


def custom_peak(tflops: float) -> DevicePeak:
    """One dense peak for every precision, from ``--peak-tflops``."""
    if tflops <= 0:
        raise BenchError(f"--peak-tflops must be positive, got {tflops}")
    return DevicePeak("custom", tflops, tflops, tflops, tflops, "--peak-tflops (one figure for every precision)")


def floor_ms(macs: int, tflops: float) -> float:
    """Milliseconds that ``macs`` multiply-accumulates take at ``tflops`` dense peak."""
    return 2.0 * macs / (tflops * 1e12) * 1000.0
