"""The benchmark itself: every row (backend x precision) measured in one run, on the same inputs.

For each row and each batch size B:

1. **stages**: encoder, mixer and generator, each warmed up until its times settle (at least
   ``warmup`` untimed calls), then ``iters`` timed calls (default: enough for a p99, see
   ``timers``) on B fixed faces (``timers``: wall clock on the CPU, CUDA events on a GPU). The
   generator's output at the largest batch is the row's final image, compared with the PyTorch
   FP32 row's (PSNR). A TensorRT stage also records the ``trtexec`` line that times its engine
   the same way;
2. **frame**: ``iters`` (default ``FIXED_ITERS``) whole frames holding B faces through ``FaceProtector.process`` (detect,
   align, protect as one batch, paste back), wall clock: each a photo, so each face's draw is chosen
   afresh (artefact guard, identity check: its recogniser is most of the time); detection + alignment and paste-back
   are read from the same frames;
3. **inflight**: for each N of ``--inflight``, ``max(iters, N)`` batches of B faces through
   ``Protector.protect_tensor_many`` with N in flight: faces per second of wall time;
4. **video**: for each N of ``--inflight``, a stream of 640x480 frames with one face through
   ``FaceProtector.process_many`` with N frames in flight, the face tracked as in ``protect VIDEO`` (detect,
   align, networks, paste-back; its draw chosen once, the identity check again every 30th frame;
   ``--video-frames`` of them after N warm-up frames): frames per second of wall time, and each
   frame's latency from entering the pipeline to leaving it (p50, p99).

A line per row goes to stderr as it finishes (the progress bar only shows on a terminal). The
machine's record includes a Jetson's power mode and clocks (``jetson``), read only.

The PyTorch eager FP32 row always runs first: it is the baseline of every ratio. Host memory is
the row's resident-set peak (``stats``), with the resident set at the row's start (memory that
earlier rows left to the allocator stays resident and counts in later peaks); device memory, on a
GPU, PyTorch's peak allocation for torch rows and whole-device use (cudaMemGetInfo) for the others.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..atomic import prepare_folder
from ..errors import AnonymixerError, BenchError
from ..export.layout import MANIFEST, PRECISIONS
from ..runtime.base import FRAME_STAGES, STAGE_IO
from . import stats
from .inputs import aligned_faces, bench_key, face_tiles, frame_with_faces, seeded_faces, video_frame
from ..provenance import versions
from .machine import DISTRIBUTIONS, describe_machine, load_average
from .macs import graph_macs
from .peaks import DevicePeak, custom_peak, find_peak, peak_for_gpu
from .jetson import jetson_state
from .timers import FIXED_ITERS, choose_clock, device_memory_mb, trtexec_command

BACKENDS = ("torch", "ort", "trt")
BASELINE = ("torch", "fp32")
VIDEO_FPS = 25.0    # the video rows' frames are this many per second apart (the tracker's clock)
REPORT_FORMAT, REPORT_VERSION = "anonymixer-bench", 1


@dataclass
class BenchConfig:
    """What ``anonymixer bench`` was asked to measure (its options, one field each)."""

    model: str = "random:ffhq256"
    backends: tuple[str, ...] = BACKENDS
    precisions: tuple[str, ...] = PRECISIONS
    batches: tuple[int, ...] = (1, 4)
    inflight: tuple[int, ...] = (1, 3)
    resolution: int | None = None
    warmup: int = 2
    iters: int | None = None
    out: Path = Path("bench")
    device: str = "cpu"
    peak_tflops: float | None = None
    peak_device: str | None = None
    calib_synthetic: int | None = None
    detector: str | None = "yunet"
    video_frames: int = 30
    progress: bool = True

    def check(self) -> None:
        unknown = sorted(set(self.backends) - set(BACKENDS))
        if unknown:
            raise BenchError(f"unknown backend {', '.join(unknown)}: choose from {', '.join(BACKENDS)}")
        unknown = sorted(set(self.precisions) - set(PRECISIONS))
        if unknown:
            raise BenchError(f"unknown precision {', '.join(unknown)}: choose from {', '.join(PRECISIONS)}")
        if (self.iters is not None and self.iters < 1) or self.warmup < 0:
            raise BenchError(f"--iters must be >= 1 and --warmup >= 0 (got {self.iters}, {self.warmup})")
        if not self.batches or min(self.batches) < 1 or not self.inflight or min(self.inflight) < 1:
            raise BenchError("--batch and --inflight take positive integers, e.g. 1,4")


@dataclass
class Plan:
    """The rows to measure, and why the others were left out."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def plan_rows(config: BenchConfig, trt_missing: str | None) -> Plan:
    """Baseline first, then torch, ort and trt rows in precision order; skips carry their reason."""
    plan = Plan(rows=[BASELINE])
    for backend in ("torch", "ort", "trt"):
        if backend not in config.backends:
            continue
        for precision in PRECISIONS:
            if precision not in config.precisions or (backend, precision) == BASELINE:
                continue
            if backend == "torch":
                reason = "the PyTorch backend runs FP32 only (reduced precisions come from the ONNX graphs)"
            elif backend == "trt" and trt_missing:
                reason = trt_missing
            else:
                plan.rows.append((backend, precision))
                continue
            plan.skipped.append({"backend": backend, "precision": precision, "reason": reason})
    return plan


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run here (the doctor's findings), or None when it can."""
    from ..runtime.doctor import collect

    trt = next(b for b in collect().backends if b.name == "trt")
    return None if trt.usable else "TensorRT not usable here (`anonymixer doctor`); missing: " + "; ".join(trt.missing)


def ensure_export(config: BenchConfig, precisions: Sequence[str], folder: Path) -> tuple[dict[str, Any], bool]:
    """An export folder of ``config.model`` with ``precisions``: reused when its manifest matches,
    else written by `anonymixer export` in a child process (its gigabytes never count against the
    benchmark's own memory peak). Returns ``(manifest, reused)``."""
    from .. import signing

    wanted = sorted(set(precisions) | {"fp32"}, key=PRECISIONS.index)
    trusted = signing.trusted_key()
    manifest = _matching_manifest(folder, config, wanted)
    if manifest is not None and trusted is None:   # under a trusted key, only what this run exported is used
        return manifest, True
    command = [sys.executable, "-m", "anonymixer.cli", "export", "--model", config.model, "--out", str(folder),
               "--precision", ",".join(wanted), "--force"]
    if trusted is not None:   # the child checks the model's signature as this process would
        command += ["--trusted-key", str(trusted.path)]
    if config.resolution is not None:
        command += ["--resolution", str(config.resolution)]
    if config.calib_synthetic is not None and "int8" in wanted:
        command += ["--calib-synthetic", str(config.calib_synthetic)]
    print(f"exporting ONNX graphs ({', '.join(wanted)}) to {folder} ...", flush=True)
    if subprocess.run(command).returncode != 0:
        raise BenchError(f"`{' '.join(command[2:])}` failed (its error is above); fix it or drop --backends ort")
    manifest = _matching_manifest(folder, config, wanted)
    if manifest is None:
        raise BenchError(f"{folder}: the export finished but its manifest does not match what was asked")
    signing.written_by_this_process(folder)
    return manifest, False


def _matching_manifest(folder: Path, config: BenchConfig, precisions: Sequence[str]) -> dict[str, Any] | None:
    from .. import __version__
    from ..digest import sha256_file

    try:
        data: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        model = data["model"]
        size = config.resolution or int(model["config"]["generator"]["size"])
        same_file = (config.model.startswith("random:") or not Path(config.model).is_file()
                     or model.get("sha256") == sha256_file(config.model))
        if (model.get("spec") == config.model and same_file and data.get("anonymixer_version") == __version__
                and int(data["output_resolution"]) == size
                and all(p in data["graphs"].get(s, {}) for p in precisions for s in data["graphs"])
                and (config.calib_synthetic is None or "int8" not in precisions
                     or (data.get("calibration") or {}).get("samples") == config.calib_synthetic)):
            return data
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def count_stage_macs(folder: Path, manifest: dict[str, Any], precisions: Sequence[str]) -> dict[str, Any]:
    """MACs per face of every stage and precision, from the graphs' files (``macs``)."""
    table: dict[str, Any] = {}
    for stage in (*FRAME_STAGES, "mapping"):
        table[stage] = {}
        for precision in precisions:
            entry = manifest["graphs"][stage].get(precision)
            if entry is not None:
                count = graph_macs(folder / entry["file"])
                table[stage][precision] = {"total": count.total, "by_op": count.by_op, "nodes": count.nodes,
                                           "uncounted": count.uncounted}
    return table


def choose_peak(config: BenchConfig, gpu_name: str | None) -> DevicePeak | None:
    if config.peak_tflops is not None:
        return custom_peak(config.peak_tflops)
    if config.peak_device is not None:
        return find_peak(config.peak_device)
    return peak_for_gpu(gpu_name) if gpu_name else None


def open_row_backend(backend: str, precision: str, config: BenchConfig, onnx_dir: Path, engines_dir: Path) -> Any:
    from ..runtime.protector import open_backend

    kind, _, index = config.device.partition(":")
    device_id = int(index) if index.isdigit() else 0
    if backend == "torch":
        return open_backend("torch", config.model, device=config.device, output_resolution=config.resolution)
    if backend == "ort":
        return open_backend("ort", onnx_dir, precision=precision, device_id=device_id,
                            providers="cpu" if kind == "cpu" else "cuda")
    from ..runtime.build import build_engines

    folder = engines_dir / precision
    if not (folder / MANIFEST).is_file():
        top = max(config.batches)
        build_engines(onnx_dir, folder, precision=precision, batch=(1, top, top), device_id=device_id, report=print)
        from .. import signing

        signing.written_by_this_process(folder)
    return open_backend("trt", folder, precision=precision, device_id=device_id)


class RowRunner:
    """Measures one row; ``bar`` advances once per measurement."""

    def __init__(self, config: BenchConfig, faces: np.ndarray, frames: dict[int, np.ndarray], detector: Any,
                 bar: tqdm, video: np.ndarray | None = None) -> None:
        self.config, self.faces, self.frames, self.detector, self.bar = config, faces, frames, detector, bar
        self.video = video

    def run(self, backend_name: str, precision: str, opened: Any) -> dict[str, Any]:
        from ..runtime.protector import Protector

        config = self.config
        protector = Protector(None, bench_key(), backend=opened)
        clock = choose_clock(opened)
        row: dict[str, Any] = {"backend": backend_name, "precision": precision,
                               "label": f"{backend_name} {precision}", "describe": opened.describe(),
                               "clock": clock.timer, "batches": [], "inflight": [], "video": []}
        image = None
        for batch in config.batches:
            entry: dict[str, Any] = {"batch": batch, "stages": {}}
            values = {"face": self.faces[:batch], **protector.key_feeds}
            for stage in FRAME_STAGES:
                self.bar.set_postfix_str(f"{row['label']} b{batch} {stage}")
                feeds = {name: values[name] for name in STAGE_IO[stage][0]}
                timing = clock.time_stage(stage, feeds, config.warmup, config.iters)
                entry["stages"][stage] = {**stats.summarize(timing.samples, batch, clock.timer),
                                          "warmup": timing.warmup}
                if backend_name == "trt":
                    entry["stages"][stage]["trtexec"] = _trtexec(opened, stage, batch, len(timing.samples))
                values.update(timing.outputs)
                self.bar.update(1)
            if batch == max(config.batches):
                image = values["image"]
            if self.detector is not None:
                self._frames(protector, batch, entry, row["label"])
            row["batches"].append(entry)
            for inflight in config.inflight:
                self.bar.set_postfix_str(f"{row['label']} b{batch} inflight {inflight}")
                row["inflight"].append(self._inflight(protector, batch, inflight))
                self.bar.update(1)
        if self.video is not None:
            for inflight in config.inflight:
                self.bar.set_postfix_str(f"{row['label']} video inflight {inflight}")
                row["video"].append(self._video(protector, inflight))
                self.bar.update(1)
        row["image"] = image
        return row

    def _video(self, protector: Any, inflight: int) -> dict[str, Any]:
        """Whole 640x480 frames, one face each, ``inflight`` at once, as ``protect VIDEO`` runs them: the
        face followed by a track (``LandmarkSmoother``, frames ``VIDEO_FPS`` apart), so its draw is chosen
        (artefact guard, identity check) once, on the warm-up's first frame, and the identity check runs
        again on every ``draws.RECHECK_FRAMES``-th frame: fps and per-frame latency."""
        from ..face.pipeline import FaceProtector
        from ..face.track import LandmarkSmoother

        assert self.video is not None
        face_protector = FaceProtector(protector, self.detector, opencv_threads=None)
        smoother = LandmarkSmoother()
        clock = iter(range(1 << 62))
        count = max(self.config.video_frames, 2 * inflight)
        warm = [(self.video, next(clock) / VIDEO_FPS) for _ in range(inflight)]
        for _ in face_protector.process_many(warm, inflight, smoother):
            pass   # warm-up: threads started, sessions and arenas at their size, the track's draw chosen
        entered: list[float] = []
        latency: list[float] = []
        found: list[int] = []

        def frames() -> Any:
            for _ in range(count):
                entered.append(time.perf_counter())
                yield self.video, next(clock) / VIDEO_FPS

        start = time.perf_counter()
        for index, result in enumerate(face_protector.process_many(frames(), inflight, smoother)):
            latency.append((time.perf_counter() - entered[index]) * 1000.0)
            found.append(result.protected)
        wall = time.perf_counter() - start
        height, width = self.video.shape[:2]
        return {"inflight": inflight, "frames": count, "size": [width, height], "faces_per_frame": min(found),
                "wall_s": wall, "fps": count / wall, "latency": stats.summarize(latency, 1, "perf_counter"),
                "identity_check": face_protector.identity_status}

    def _frames(self, protector: Any, batch: int, entry: dict[str, Any], label: str) -> None:
        from ..face.pipeline import FaceProtector

        self.bar.set_postfix_str(f"{label} b{batch} frame")
        face_protector = FaceProtector(protector, self.detector, max_batch=batch, opencv_threads=None)
        frame = self.frames[batch]
        for _ in range(self.config.warmup):
            face_protector.process(frame)
        total, detect_align, paste, found = [], [], [], []
        for _ in range(self.config.iters or FIXED_ITERS):
            start = time.perf_counter()
            result = face_protector.process(frame)
            total.append((time.perf_counter() - start) * 1000.0)
            # the pipeline's first phase: detection, alignment and the outline that paste-back replaces
            detect_align.append(result.timings_ms["detect"] + result.timings_ms["align"]
                                + result.timings_ms.get("outline", 0.0))
            paste.append(result.timings_ms["paste"])
            found.append(result.protected)
        entry["faces_in_frame"] = min(found)
        entry["stages"]["detect_align"] = stats.summarize(detect_align, batch, "perf_counter")
        entry["stages"]["paste"] = stats.summarize(paste, batch, "perf_counter")
        entry["stages"]["frame"] = stats.summarize(total, batch, "perf_counter")
        self.bar.update(1)

    def _inflight(self, protector: Any, batch: int, inflight: int) -> dict[str, Any]:
        faces = self.faces[:batch]
        count = max(self.config.iters or FIXED_ITERS, inflight)
        warm = inflight if self.config.warmup else 0   # fills the pipeline once: threads started, sessions warm
        for _ in protector.protect_tensor_many([faces] * warm, inflight):
            pass
        start = time.perf_counter()
        for _ in protector.protect_tensor_many([faces] * count, inflight):
            pass
        wall = time.perf_counter() - start
        return {"batch": batch, "inflight": inflight, "batches": count, "faces": count * batch,
                "wall_s": wall, "faces_per_s": count * batch / wall}


def prepare_inputs(config: BenchConfig, size: int, notes: list[str],
                   template: np.ndarray | None = None) -> tuple[Any, dict[int, np.ndarray], np.ndarray, str]:
    """``(detector, {batch: frame with that many faces}, faces (max batch, 3, size, size), their source)``.

    Without a detector (``--detector none``, or none installed: a note says why) there are no
    frames and the faces are seeded images.
    """
    import cv2

    # Before any detection: OpenCV's worker threads keep spinning after a call and starve the
    # networks' threads (FaceProtector sets the same; see face.pipeline).
    cv2.setNumThreads(1)
    top = max(config.batches)
    if config.detector:
        from ..face.detect import open_detector

        try:
            detector = open_detector(config.detector)
            tiles = face_tiles()
        except AnonymixerError as exc:
            notes.append(f"detection, alignment, paste-back and whole frames not measured: {exc}")
        else:
            frames = {batch: frame_with_faces(batch, tiles) for batch in {*config.batches, top}}
            frames[0] = video_frame(tiles)   # key 0: the 640x480 one-face frame of the video rows
            faces = aligned_faces(detector, frames[top], top, size, template)
            how = "FFHQ-aligned" if template is None else "template-aligned"
            return (detector, frames, faces,
                    f"{how} crops of the packaged photos (astronaut, Grace Hopper), as detected")
    return None, {}, seeded_faces(top, size), "seeded smooth random images"


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Measure every row of ``config``; return the report's data (``report`` writes it)."""
    config.check()
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = describe_machine(config.device)
    machine["jetson"] = jetson_state()
    plan = plan_rows(config, tensorrt_missing() if "trt" in config.backends else None)
    out = Path(config.out)
    prepare_folder(out)
    onnx_dir, engines_dir = out / "onnx", out / "engines"
    graph_precisions = sorted({p for b, p in plan.rows if b != "torch"} | {"fp32"}, key=PRECISIONS.index)
    manifest, reused = ensure_export(config, graph_precisions, onnx_dir)
    macs = count_stage_macs(onnx_dir, manifest, graph_precisions)
    peak = choose_peak(config, machine["gpu"]["name"] if machine["gpu"] else None)
    notes = [f"ONNX graphs: {onnx_dir} ({'reused: same model, resolution and precisions' if reused else 'exported'})"]

    detector, frames, faces, face_source = prepare_inputs(config, int(manifest["input_size"]), notes,
                                                          _template(manifest.get("crop_template")))
    video = frames.pop(0, None)
    per_row = (len(config.batches) * (len(FRAME_STAGES) + (detector is not None) + len(config.inflight))
               + (video is not None) * len(config.inflight))
    rows: list[dict[str, Any]] = []
    reset_ok = True
    with tqdm(total=len(plan.rows) * per_row, desc="bench", unit="step", disable=None if config.progress else True,
              file=sys.stderr) as bar:
        runner = RowRunner(config, faces, frames, detector, bar, video)
        for number, (backend, precision) in enumerate(plan.rows, 1):
            reset_ok = stats.reset_host_peak() and reset_ok
            rss_start = stats.host_rss_mb()   # what earlier rows left resident is in this row's peak too
            cuda = _cuda_torch(config.device)
            if cuda is not None:
                cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                opened = open_row_backend(backend, precision, config, onnx_dir, engines_dir)
            except AnonymixerError as exc:
                if (backend, precision) == BASELINE:
                    raise
                plan.skipped.append({"backend": backend, "precision": precision, "reason": str(exc)})
                bar.update(per_row)
                continue
            try:
                open_s = time.perf_counter() - start
                row = runner.run(backend, precision, opened)
                row["open_s"] = open_s
                row["memory"] = {"host_peak_mb": stats.host_peak_mb(), "host_rss_start_mb": rss_start,
                                 "device_mb": device_memory_mb(config.device),
                                 "device_peak_allocated_mb": (cuda.max_memory_allocated() / 2**20
                                                              if cuda is not None and backend == "torch" else None)}
            finally:
                opened.close()
            rows.append(row)
            bar.write(f"bench: [{number}/{len(plan.rows)}] {progress_line(row, time.perf_counter() - start)}",
                      file=sys.stderr)

    from .compare import derive

    derive(rows, macs, peak)
    machine["load_average_end"] = load_average()
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(config).items()}
    if any(backend == "ort" for backend, _ in plan.rows):
        from ..runtime.ort import SESSION_OPTIONS

        settings["ort_session_options"] = SESSION_OPTIONS
    settings.update(faces=face_source, key="a fixed public key (bench.inputs.bench_key)",
                    host_memory=("VmHWM per row (reset at each row's start)" if reset_ok else
                                 "VmHWM since process start: this kernel refused the per-row reset"),
                    output_resolution=int(manifest["output_resolution"]), model_description=manifest["model"]["description"])
    return {"format": REPORT_FORMAT, "version": REPORT_VERSION, "created": started.isoformat(timespec="seconds"),
            "wall_s": (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(),
            "machine": machine, "versions": versions(DISTRIBUTIONS), "settings": settings,
            "macs": {"counted": "Conv/ConvTranspose/MatMul/Gemm (and their integer forms) from ONNX shapes at batch 1; "
                                "see anonymixer.bench.macs", "per_face": macs},
            "peak": None if peak is None else asdict(peak), "notes": notes, "skipped": plan.skipped, "rows": rows}


def progress_line(row: dict[str, Any], seconds: float) -> str:
    """One finished row, e.g. ``torch fp32 in 9.1 s: B=1 encoder 5.40 ms (p99 6.10), ...; warm-up
    settled in 10-14 calls``."""
    parts, calls, unsettled = [], [], []
    for entry in row["batches"]:
        stages = ", ".join(f"{stage} {item['p50_ms']:.3g} ms (p99 {item['p99_ms']:.3g})"
                           for stage, item in entry["stages"].items() if "warmup" in item)
        parts.append(f"B={entry['batch']} {stages}")
        for stage, item in entry["stages"].items():
            if "warmup" in item:
                calls.append(item["warmup"]["calls"])
                if not item["warmup"]["settled"] and item["warmup"]["calls"]:
                    unsettled.append(f"B={entry['batch']} {stage}")
    warm = (f"warm-up {min(calls)}-{max(calls)} calls, " + ("settled" if not unsettled else
            f"NOT settled for {', '.join(unsettled)} (limit reached; their p99 may include warm-up)")) \
        if calls and max(calls) else "no warm-up (--warmup 0)"
    return f"{row['label']} in {seconds:.1f} s: {'; '.join(parts)}; {warm}"


def _trtexec(opened: Any, stage: str, batch: int, iterations: int) -> str:
    """``timers.trtexec_command`` for ``stage`` of an opened TensorRT backend."""
    from ..keymaterial import KEY_INPUTS
    from ..runtime.engines import engine_filename

    runner = opened.stage(stage)
    batched = tuple(name for name in STAGE_IO[stage][0] if name not in KEY_INPUTS)
    return trtexec_command(str(opened.folder / engine_filename(stage, opened.precision)), runner.sample_shapes,
                           batch, iterations, batched)


def _cuda_torch(device: str) -> Any:
    """``torch.cuda`` when ``device`` is a CUDA device and PyTorch sees it, else None."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def _template(value: Any) -> np.ndarray | None:
    """The manifest's ``crop_template`` as a ``(5, 2)`` array, or None (FFHQ alignment)."""
    return None if value is None else np.asarray(value, np.float64).reshape(5, 2)
