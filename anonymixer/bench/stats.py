"""Latency statistics and memory probes.

Percentiles use linear interpolation between the two nearest ranks (NumPy's default, "linear"):
for sorted samples ``x[0..n-1]`` the ``q``-th percentile sits at rank ``(n - 1) * q / 100``.

Host memory is the kernel's resident-set high-water mark, ``VmHWM`` in ``/proc/self/status``:
everything the process touched, native allocations of ONNX Runtime, PyTorch and OpenCV included.
(``tracemalloc`` sees only Python's own allocator, a small part of it, so it is not used.) Writing
``5`` to ``/proc/self/clear_refs`` resets the mark (Linux 4.0+), so each row gets its own peak;
where that is refused, the figure is the process's peak so far and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, linearly interpolated between ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(float(s) for s in samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples_ms: Sequence[float], faces: int, timer: str) -> dict[str, Any]:
    """Statistics of one measurement: ``samples_ms`` are per-call latencies of calls on ``faces`` faces.

    Returns ``{"n", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "faces",
    "faces_per_s" (faces / p50), "timer", "samples_ms"}``; the raw samples are kept.
    """
    samples = [float(s) for s in samples_ms]
    p50 = percentile(samples, 50)
    return {"n": len(samples), "p50_ms": p50, "p90_ms": percentile(samples, 90),
            "p99_ms": percentile(samples, 99), "mean_ms": sum(samples) / len(samples),
            "min_ms": min(samples), "max_ms": max(samples), "faces": faces,
            "faces_per_s": faces * 1000.0 / p50 if p50 > 0 else None, "timer": timer, "samples_ms": samples}


def _status_kb(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_host_peak() -> bool:
    """Reset this process's RSS high-water mark; False where the kernel refuses (then peaks accumulate)."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def host_peak_mb() -> float | None:
    """This process's peak resident set (``VmHWM``) in MiB since start or the last reset; None off Linux."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024.0


def host_rss_mb() -> float | None:
    """This process's resident set now (``VmRSS``) in MiB; None off Linux."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0
