"""The machine and software a benchmark ran on, for ``bench.json`` and the report headers."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


DISTRIBUTIONS = ("numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless",
                 "opencv-python", "tensorrt", "cuda-python")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Instruction-set extensions that decide CPU speed per precision (INT8: VNNI, AMX; BF16).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")


def cpu_flags() -> list[str]:
    """Those of ``CPU_FLAGS`` this CPU has (``/proc/cpuinfo``; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")) and ":" in line:
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


INT8_FLAGS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def int8_features() -> str:
    """``avx2 yes, avx512_vnni yes, avx_vnni no, amx_int8 no``: what ONNX Runtime's integer kernels
    can use here (VNNI: one instruction per u8 x s8 dot product; without it, U8S8 may saturate)."""
    have = set(cpu_flags())
    flags = INT8_FLAGS if "asimd" in have else INT8_FLAGS[:-1]
    return ", ".join(f"{flag} {'yes' if flag in have else 'no'}" for flag in flags)


def ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        return None
    return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: another job on the machine shows here, and skews timings."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe_machine(device: str) -> dict[str, Any]:
    """CPU model, cores, RAM, OS, load average now, and the GPU when ``device`` is CUDA."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpu_int8": int8_features(),
                            "cores": os.cpu_count(),
                            "usable_cores": usable_cores(),
                            "ram_gb": None if ram_gb() is None else round(ram_gb() or 0.0, 1),
                            "os": f"{platform.system()} {platform.release()} {platform.machine()}",
                            "load_average_start": load_average(), "gpu": None}
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index or 0
            props = torch.cuda.get_device_properties(index)
            info["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                           "compute_capability": f"{props.major}.{props.minor}"}
    return info


