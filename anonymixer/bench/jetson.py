"""A Jetson's power mode and clocks, read without changing anything, for the benchmark's record.

The same engine runs at very different speeds under different ``nvpmodel`` power modes (15 W vs
MAXN) and with or without ``jetson_clocks`` (clocks pinned at their maximum vs scaling with load),
so a Jetson latency means little without them. Everything here only reads:

- the board: ``/proc/device-tree/model`` (e.g. "NVIDIA Jetson AGX Orin Developer Kit") and the
  L4T release in ``/etc/nv_tegra_release``;
- the power mode: ``nvpmodel -q`` (its "NV Power Mode: MAXN" line and the mode number);
- clocks, MHz, now and at most: the GPU's devfreq node (``/sys/devices/platform/*gpu*/devfreq/*``
  or ``/sys/devices/gpu.0/devfreq/*``: ``cur_freq``, ``max_freq``, ``min_freq``), each CPU's
  cpufreq (``scaling_cur_freq``, ``scaling_max_freq``), and the memory (EMC) clock where the kernel
  shows it (``/sys/kernel/debug/bpmp/debug/clk/emc/rate``, root only). ``jetson_clocks`` leaves
  the GPU's ``min_freq`` at its ``max_freq``: that is recorded as ``clocks_pinned``.

On any other machine ``jetson_state()`` says ``{"jetson": False, "note": "not a Jetson"}``.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

GPU_DEVFREQ = ("sys/devices/platform/*gpu*/devfreq/*", "sys/devices/platform/bus@0/*gpu*/devfreq/*",
               "sys/devices/gpu.0/devfreq/*", "sys/devices/*.gpu/devfreq/*")
EMC_RATE = "sys/kernel/debug/bpmp/debug/clk/emc/rate"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _mhz(path: Path) -> float | None:
    """A clock file in Hz (devfreq, EMC) or kHz (cpufreq, by name) as MHz; None when unreadable."""
    text = _read(path)
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return round(value / 1000.0 if "cpufreq" in str(path) else value / 1e6, 1)


def is_jetson(root: Path = Path("/")) -> bool:
    model = _read(root / "proc/device-tree/model") or ""
    return "jetson" in model.lower() or (root / "etc/nv_tegra_release").is_file()


def power_mode(run: Any = subprocess.run) -> dict[str, Any]:
    """``nvpmodel -q``: ``{"name": "MAXN", "id": 0}``, or ``{"error": why}``."""
    if shutil.which("nvpmodel") is None and run is subprocess.run:
        return {"error": "nvpmodel not found"}
    try:
        result = run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"nvpmodel -q failed: {exc}"}
    text = result.stdout or ""
    name = re.search(r"NV Power Mode:\s*(.+)", text)
    number = re.search(r"^\s*(\d+)\s*$", text, re.MULTILINE)
    if name is None:
        return {"error": f"nvpmodel -q said: {text.strip()[:200] or result.stderr.strip()[:200]}"}
    return {"name": name.group(1).strip(), "id": int(number.group(1)) if number else None}


def clocks(root: Path = Path("/")) -> dict[str, Any]:
    """GPU, CPU and memory clocks in MHz (now, min and max), as far as they can be read."""
    found: dict[str, Any] = {}
    for pattern in GPU_DEVFREQ:
        nodes = sorted(glob.glob(str(root / pattern)))
        if nodes:
            node = Path(nodes[0])
            found["gpu_mhz"] = {"now": _mhz(node / "cur_freq"), "min": _mhz(node / "min_freq"),
                                "max": _mhz(node / "max_freq")}
            gpu = found["gpu_mhz"]
            found["clocks_pinned"] = gpu["min"] is not None and gpu["min"] == gpu["max"]
            break
    cpus = sorted(glob.glob(str(root / "sys/devices/system/cpu/cpu[0-9]*/cpufreq")),
                  key=lambda p: int(re.findall(r"cpu(\d+)", p)[-1]))
    if cpus:
        found["cpu_mhz"] = {"now": [_mhz(Path(p) / "scaling_cur_freq") for p in cpus],
                            "max": [_mhz(Path(p) / "scaling_max_freq") for p in cpus]}
    emc = _mhz(root / EMC_RATE)
    found["emc_mhz"] = emc if emc is not None else "unreadable (needs root: /sys/kernel/debug)"
    return found


def jetson_state(root: Path = Path("/"), run: Any = subprocess.run) -> dict[str, Any]:
    """Board, L4T release, power mode and clocks of a Jetson; ``{"jetson": False, ...}`` elsewhere."""
    if not is_jetson(root):
        return {"jetson": False, "note": "not a Jetson"}
    release = (_read(root / "etc/nv_tegra_release") or "").splitlines()
    return {"jetson": True, "model": _read(root / "proc/device-tree/model"),
            "l4t": release[0].lstrip("# ").strip() if release else None,
            "power_mode": power_mode(run), **clocks(root)}


def describe(state: dict[str, Any]) -> str:
    """One line for the report's header."""
    if not state.get("jetson"):
        return f"Jetson: {state.get('note', 'not a Jetson')}"
    mode = state.get("power_mode", {})
    gpu = state.get("gpu_mhz") or {}
    return (f"Jetson: {state.get('model')}, {state.get('l4t')}; power mode "
            f"{mode.get('name', mode.get('error'))}; GPU {gpu.get('now')} MHz (max {gpu.get('max')}), clocks "
            f"{'pinned (jetson_clocks)' if state.get('clocks_pinned') else 'scaling'}; EMC {state.get('emc_mhz')}")
