"""``anonymixer doctor``: what this machine can run, and the pip command for what it cannot.

Every probe is guarded: a missing package, driver or GPU is a finding, never a crash. This is the
only place (with the TensorRT/CUDA backends themselves) that imports tensorrt and cuda-python.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

PIP_TORCH = "pip install torch==2.13.0 (or your platform's build: Jetson images bring their own)"
PIP_ORT = "pip install 'anonymixer[cpu]' (onnxruntime; or 'anonymixer[gpu]' for onnxruntime-gpu, never both)"
PIP_ORT_GPU = ("pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'anonymixer[gpu]' (onnxruntime-gpu "
               "alone; on Jetson, NVIDIA's onnxruntime-gpu wheel for your JetPack)")
# Packages that each install the same `onnxruntime` module folder: with two of them, the one installed last
# has overwritten part of the other's files, and uninstalling either deletes files the other needs.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-training")
PIP_TRT = "pip install 'anonymixer[trt]' (tensorrt + cuda-python; on Jetson TensorRT comes with JetPack)"
PIP_CUDA_PYTHON = "pip install cuda-python (also in 'anonymixer[trt]'; PyCUDA works too, without CUDA graphs)"
# cuda-python's major version is the CUDA runtime it links: the driver must support that CUDA.
PIN_CUDA_PYTHON = {12: "pip install 'cuda-python>=12.6,<13' (JetPack 6: CUDA 12.6)",
                   13: "pip install 'cuda-python>=13,<14' (a driver for CUDA 13: R580 or newer)"}
NEED_DRIVER = "an NVIDIA GPU with its driver (nvidia-smi must work)"
# A package of an optional extra, as Python imports it -> how to install it (the CLI's one-line error
# when a command needs it and it is absent).
OPTIONAL_PACKAGES = {
    "onnxruntime": PIP_ORT,
    "torch": PIP_TORCH.replace("pip install torch==2.13.0", "pip install torch==2.13.0 && pip install 'anonymixer[export]'"),
    "onnx": "pip install 'anonymixer[export]'",
    "onnxscript": "pip install 'anonymixer[export]'",
    "onnxslim": "pip install 'anonymixer[export]'",
    "matplotlib": "pip install 'anonymixer[eval]'",
    "ray": "pip install 'anonymixer[ray]'",
}


@dataclass
class Backend:
    """Whether one backend can run here, and what is missing otherwise."""

    name: str
    usable: bool
    detail: str
    missing: list[str] = field(default_factory=list)   # "what (how to add it)"


@dataclass
class Findings:
    versions: dict[str, str]        # component -> version or "absent (...)"
    gpu: dict[str, str]             # name, compute capability, memory; empty without a GPU
    has_tensorrt: bool
    has_cuda: bool                  # a CUDA driver and at least one device
    backends: list[Backend]
    warnings: list[str] = field(default_factory=list)   # mismatched pairs, with the pip line that mends them


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def cuda_pair_warnings(cuda_python: str | None, driver: str | None, tensorrt_cuda: int | None) -> list[str]:
    """Warnings for a cuda-python that the driver cannot run, or that differs from TensorRT's CUDA.

    ``cuda_python``: its version (``"13.0.1"``); ``driver``: the CUDA version the driver supports
    (``"12.6"``); ``tensorrt_cuda``: the CUDA major of the TensorRT wheel (``tensorrt-cu12`` -> 12).
    cuda-python 13 links the CUDA 13 runtime, which a CUDA 12 driver (JetPack 6.2: 12.6) cannot
    load; a TensorRT built for another CUDA major than cuda-python's means two runtimes in one process.
    """
    warnings: list[str] = []
    major = _major(cuda_python)
    if major is None:
        return warnings
    driver_major = _major(driver)
    if driver_major is not None and driver_major < major:
        warnings.append(f"cuda-python {cuda_python} needs a driver for CUDA {major}, but this driver supports "
                        f"CUDA {driver}: {PIN_CUDA_PYTHON.get(driver_major, PIN_CUDA_PYTHON[12])}")
    if tensorrt_cuda is not None and tensorrt_cuda != major:
        warnings.append(f"TensorRT here is built for CUDA {tensorrt_cuda} but cuda-python {cuda_python} is for "
                        f"CUDA {major}: {PIN_CUDA_PYTHON.get(tensorrt_cuda, PIN_CUDA_PYTHON[12])}")
    return warnings


def _major(version: str | None) -> int | None:
    head = (version or "").split(".")[0]
    return int(head) if head.isdigit() else None


def ort_conflict(installed: dict[str, str], machine: str | None = None) -> str | None:
    """A warning, with the commands that mend it, when ``installed`` (ONNX Runtime distribution
    -> version) holds more than one ONNX Runtime package; ``None`` for zero or one.

    The mend uninstalls every one of them (uninstalling one alone would delete files of the
    other, which shares its module folder) and installs the one to keep: onnxruntime-gpu where
    it was installed (the user asked for a GPU), else the first other one. ``machine``:
    ``platform.machine()``; on aarch64 (Jetson) onnxruntime-gpu comes from NVIDIA's wheel for
    the JetPack release, not from PyPI.
    """
    present = [name for name in ORT_DISTRIBUTIONS if name in installed]
    if len(present) < 2:
        return None
    keep = "onnxruntime-gpu" if "onnxruntime-gpu" in present else next(n for n in present if n != "onnxruntime")
    pin = f"{keep}=={installed[keep]}"
    if keep == "onnxruntime-gpu" and (machine or platform.machine()) == "aarch64":
        reinstall = f"pip install <NVIDIA's {pin} wheel for your JetPack>"
    else:
        reinstall = f"pip install {pin}"
    return (f"{len(present)} ONNX Runtime packages are installed ({', '.join(f'{n} {installed[n]}' for n in present)}); "
            f"they share one module folder, so the one installed last broke the other: "
            f"pip uninstall -y {' '.join(present)} && {reinstall}")


def installed_ort() -> dict[str, str]:
    """The ONNX Runtime distributions installed here (name -> version)."""
    return {name: version for name in ORT_DISTRIBUTIONS if (version := _version(name))}


def _tensorrt_cuda() -> int | None:
    """The CUDA major of the installed TensorRT wheel (``tensorrt-cu12``/``-cu13``); None for JetPack's."""
    for major in (13, 12, 11):
        if _version(f"tensorrt-cu{major}") or _version(f"tensorrt_cu{major}_libs"):
            return major
    return None


def _probe_cuda(versions: dict[str, str], gpu: dict[str, str]) -> bool:
    """CUDA driver/runtime and GPU through the binding in use; fills ``versions``/``gpu``; True with a device."""
    from ..errors import AnonymixerError
    from .cuda import binding, device_info, version_text

    cuda_python = _version("cuda-python") or _version("cuda-bindings")
    pycuda = _version("pycuda")
    versions["cuda-python"] = cuda_python or f"absent ({PIP_CUDA_PYTHON})"
    if pycuda:
        versions["PyCUDA"] = pycuda
    try:
        cuda = binding()
        versions["CUDA binding"] = cuda.name + (" (preferred: NVIDIA's, with CUDA graphs)" if cuda.has_graphs
                                                else " (fallback: no CUDA graphs; cuda-python is preferred)")
    except AnonymixerError as exc:
        versions["CUDA binding"] = f"none ({exc})"
        versions["CUDA driver"] = "unknown (needs cuda-python or PyCUDA to ask)"
        return False
    except Exception as exc:  # a broken install is a finding too
        versions["CUDA driver"] = f"unknown (the CUDA binding failed: {type(exc).__name__}: {exc})"
        return False
    try:
        versions["CUDA runtime"] = version_text(cuda.runtime_version())
    except Exception as exc:
        versions["CUDA runtime"] = f"unavailable ({exc})"
    driver = cuda.driver_version()
    if driver == 0:
        versions["CUDA driver"] = f"absent (no NVIDIA driver on this machine; needs {NEED_DRIVER})"
        return False
    versions["CUDA driver"] = version_text(driver)
    try:
        info = device_info(0)
    except AnonymixerError as exc:
        versions["CUDA driver"] += f"; no usable device ({exc})"
        return False
    gpu.update({"name": info.name, "compute capability": info.compute_capability,
                "memory": f"{info.total_memory_mb} MiB"})
    return True


def _probe_tensorrt(versions: dict[str, str]) -> bool:
    from ..errors import AnonymixerError
    from .engines import require_tensorrt

    try:
        versions["TensorRT"] = require_tensorrt()
        return True
    except AnonymixerError as exc:
        versions["TensorRT"] = "absent: " + str(exc).replace("TensorRT is not installed", "not installed")
        return False


def _probe_torch(versions: dict[str, str]) -> tuple[bool, bool]:
    """(torch importable, torch sees a CUDA device)."""
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError:
        versions["torch"] = f"absent ({PIP_TORCH})"
        return False, False
    cuda = bool(torch.cuda.is_available())
    versions["torch"] = f"{torch.__version__} (CUDA {'available' if cuda else 'not available'})"
    return True, cuda


def _probe_video(versions: dict[str, str]) -> None:
    """OpenCV (cameras, streams; GStreamer pipelines only where it was built with GStreamer) and
    PyAV (video files; which encoders its FFmpeg has)."""
    try:
        import cv2

        from ..face.video import gstreamer_available
    except ImportError as exc:
        versions["OpenCV"] = versions["PyAV"] = f"absent ({exc}): pip install anonymixer's dependencies"
        return
    versions["OpenCV"] = (f"{cv2.__version__}; GStreamer: " + ("yes (gst:... sources work)" if gstreamer_available()
                          else "no (gst:... sources need an OpenCV built with GStreamer, as JetPack's is)"))
    try:
        av: Any = importlib.import_module("av")
    except ImportError:
        versions["PyAV"] = "absent (pip install av): video files cannot be read or written"
        return
    encoders = []
    for name in ("libx264", "libvpx-vp9"):
        try:
            av.codec.Codec(name, "w")
            encoders.append(name + (" (GPL)" if name == "libx264" else ""))
        except Exception:  # PyAV raises its own UnknownCodecError
            encoders.append(f"no {name}")
    versions["PyAV"] = f"{av.__version__}, FFmpeg {av.ffmpeg_version_info}; encoders: {', '.join(encoders)}"


def _probe_identity_check(versions: dict[str, str]) -> None:
    """Which recogniser ``protect``'s identity check (on by default) will use here (``face.identity``)."""
    from ..face.detect import DLIB_INSTALL
    from ..face.identity import describe, installed, status

    name = installed()
    if name == "dlib":
        versions["identity check"] = f"{describe(name)} (on by default; --no-identity-check turns it off)"
    elif name == "sface":
        versions["identity check"] = (f"{describe(name)}; with dlib ({DLIB_INSTALL}) the check is dlib's, which the "
                                      f"published figures use")
    else:
        versions["identity check"] = status(True, False)


def collect() -> Findings:
    """Probe Python, numpy, onnxruntime, torch, TensorRT, cuda-python, the driver and the GPU."""
    from ..bench.machine import cpu_model, int8_features

    versions: dict[str, str] = {"Python": f"{platform.python_version()} ({sys.executable})",
                                "platform": f"{platform.system()} {platform.machine()}",
                                "CPU": f"{cpu_model()}; INT8 features: {int8_features()}"}
    gpu: dict[str, str] = {}
    import numpy

    versions["numpy"] = numpy.__version__
    try:
        ort: Any = importlib.import_module("onnxruntime")
        providers = list(ort.get_available_providers())
        versions["onnxruntime"] = f"{ort.__version__}, providers: {', '.join(providers)}"
    except ImportError:
        ort, providers = None, []
        versions["onnxruntime"] = f"absent ({PIP_ORT})"
    _probe_video(versions)
    _probe_identity_check(versions)
    has_torch, torch_cuda = _probe_torch(versions)
    has_trt = _probe_tensorrt(versions)
    has_cuda = _probe_cuda(versions, gpu)
    driver = versions.get("CUDA driver", "")
    conflict = ort_conflict(installed_ort())
    warnings = ([conflict] if conflict else []) + cuda_pair_warnings(_version("cuda-python") or _version("cuda-bindings"),
                                  driver.split(";")[0] if driver[:1].isdigit() else None, _tensorrt_cuda())

    backends = [
        Backend("torch", has_torch, ("CPU" + (" and CUDA" if torch_cuda else "")) if has_torch else "",
                [] if has_torch else [f"PyTorch ({PIP_TORCH})"]),
        Backend("ort", ort is not None, "CPU" if ort is not None else "",
                [] if ort is not None else [f"onnxruntime ({PIP_ORT})"]),
    ]
    missing = [] if "CUDAExecutionProvider" in providers else [f"onnxruntime's CUDA provider ({PIP_ORT_GPU})"]
    if not has_cuda:
        missing.append(f"a CUDA driver and GPU ({NEED_DRIVER})")
    backends.append(Backend("ort-cuda", not missing, "CUDA (IO binding)" if not missing else "", missing))
    missing = [] if has_trt else [f"TensorRT ({PIP_TRT})"]
    if versions["cuda-python"].startswith("absent") and "PyCUDA" not in versions:
        missing.append(f"cuda-python ({PIP_CUDA_PYTHON})")
    if not has_cuda:
        missing.append(f"a CUDA driver and GPU ({NEED_DRIVER})")
    backends.append(Backend("trt", not missing, f"TensorRT {versions['TensorRT']}" if not missing else "", missing))
    return Findings(versions=versions, gpu=gpu, has_tensorrt=has_trt, has_cuda=has_cuda, backends=backends,
                    warnings=warnings)


def report(findings: Findings) -> list[str]:
    """The doctor's printout, one finding per line."""
    width = max(len(k) for k in findings.versions) + 2
    lines = [f"{name + ':':<{width}} {value}" for name, value in findings.versions.items()]
    if findings.gpu:
        lines.append(f"{'GPU:':<{width}} " + ", ".join(f"{k} {v}" for k, v in findings.gpu.items()))
    else:
        lines.append(f"{'GPU:':<{width}} none found")
    lines.append("backends:")
    for backend in findings.backends:
        if backend.usable:
            lines.append(f"  {backend.name:<9} usable ({backend.detail})")
        else:
            lines.append(f"  {backend.name:<9} NOT usable; missing:")
            lines.extend(f"    - {item}" for item in backend.missing)
    lines.extend(f"WARNING: {line}" for line in findings.warnings)
    absent = [name for name, present in (("TensorRT", findings.has_tensorrt), ("CUDA", findings.has_cuda))
              if not present]
    if absent:
        usable = ", ".join(b.name for b in findings.backends if b.usable) or "none"
        verb = "are" if len(absent) > 1 else "is"
        lines.append(f"{' and '.join(absent)} {verb} absent on this machine; backends that can run here: {usable}.")
    return lines
