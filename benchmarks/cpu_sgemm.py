"""The CPU's practical FP32 ceiling: a large single-precision matrix product (4096^3 MACs), in GMAC/s.

    python benchmarks/cpu_sgemm.py

A well-blocked SGEMM is about the best any FP32 convolution can do on a CPU, so this is the
yardstick for the "achieved GMAC/s" column of `anonymixer bench` on machines without a vendor
peak: a network at half of it has at most 2x left to gain in FP32, whatever the runtime.
Best of 5 runs after 2 warm-ups, with PyTorch's and NumPy's BLAS, all cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N = 4096


def best_gmac_per_s(run) -> float:
    for _ in range(2):
        run()
    best = min(_timed(run) for _ in range(5))
    return N**3 / best / 1e9


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> int:
    from anonymixer.bench.machine import cpu_flags, cpu_model, load_average, usable_cores

    a, b = (np.random.default_rng(i).random((N, N), dtype=np.float32) for i in (0, 1))
    results = {"numpy": best_gmac_per_s(lambda: a @ b)}
    try:
        import torch

        x, y = torch.from_numpy(a), torch.from_numpy(b)
        results[f"torch ({torch.get_num_threads()} threads)"] = best_gmac_per_s(lambda: torch.mm(x, y))
    except ImportError:
        pass
    print(f"{cpu_model()}, {usable_cores()} cores ({' '.join(cpu_flags())}); load average {load_average()}")
    for name, value in results.items():
        print(f"SGEMM {N}^3 with {name}: {value:.0f} GMAC/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
