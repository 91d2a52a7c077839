"""``anonymixer build``: an export folder -> one TensorRT engine per graph, with sidecars.

    build_engines("export/ffhq", "engines/ffhq", precision="fp16", batch=(1, 1, 4),
                  timing_cache="trt.cache")

Works with TensorRT 10.3 (JetPack 6.2) through 11.x: what each engine asks of TensorRT (typing
mode, flags, profile) is ``buildplan.plan_build``'s, read from the installed module's own flags;
``dry_run`` prints that plan for the installed TensorRT and for stand-ins of 10.3, 10.12 and 11.1.
One optimization profile covers the batch range; a timing cache file is loaded before and saved
after each engine, so rebuilds on the same GPU are fast. TensorRT and cuda-python are imported
only when a build starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import prepare_folder, write_bytes, write_json
from ..errors import AnonymixerError, EngineError
from ..export.layout import GRAPHS, write_manifest
from .buildplan import STANDIN_FLAGS, STANDIN_NOTES, GraphPlan, describe_build, features, plan_build, standin
from .cuda import device_info
from .engines import (EngineTarget, engine_filename, engine_manifest, make_sidecar, parse_batch, require_tensorrt,
                      sidecar_path)
from ..digest import sha256_file
from ..codestats import STATS_FILE
from .manifest import ExportManifest

log = logging.getLogger("anonymixer.build")


def network_flags(creation_flags: Any, plan: GraphPlan) -> int:
    """``create_network`` flags for ``plan``; ``creation_flags`` is ``trt.NetworkDefinitionCreationFlag``."""
    bits = 0
    for name in plan.network_flags:
        flag = getattr(creation_flags, name, None)
        if flag is not None:
            bits |= 1 << int(flag)
    return bits


def dry_run(onnx_dir: str | os.PathLike[str], precision: str = "fp16", batch: str | Sequence[int] = (1, 1, 8),
            stages: Sequence[str] = GRAPHS) -> list[str]:
    """The build plan of ``onnx_dir`` for the installed TensorRT (if any) and each stand-in version.

    Nothing is built and no GPU is needed; the graphs' files are checked against the manifest.
    """
    manifest = ExportManifest(onnx_dir)
    wanted = parse_batch(batch)
    lines = [f"build plan for {manifest.folder} at --precision {precision}, batch {','.join(map(str, wanted))} "
             "(dry run: nothing built)"]
    try:
        require_tensorrt()
        import tensorrt as trt

        installed: list[tuple[Any, str]] = [(trt, "installed")]
    except AnonymixerError as exc:
        installed = []
        lines.append(f"(no TensorRT here: {exc}; showing stand-ins only)")
    for module, note in installed + [(standin(v), f"stand-in: {STANDIN_NOTES[v]}") for v in STANDIN_FLAGS]:
        found = features(module)
        lines += describe_build(found, plan_build(found, manifest, precision, wanted, stages), note)
    return lines


def parser_failure(path: Path, version: str, errors: Sequence[str]) -> EngineError:
    """One line for a failed ONNX parse: the first error, and how many more there were."""
    first = " ".join(errors[0].split()) if errors else "no error reported"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return EngineError(f"{path}: TensorRT {version} cannot parse this graph: {first}{more}; "
                       "check that it was exported by this anonymixer (`anonymixer export`)")


def build_engines(onnx_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], precision: str = "fp16",
                  batch: str | Sequence[int] = (1, 1, 8), workspace_mb: int = 4096,
                  timing_cache: str | os.PathLike[str] | None = None, stages: Sequence[str] = GRAPHS,
                  device_id: int = 0, report: Callable[[str], None] | None = None) -> list[Path]:
    """Build one engine per graph of ``onnx_dir`` into ``out_dir``; return the engine paths.

    ``batch``: ``(min, opt, max)`` faces per call for the optimization profile (the mixer's key
    material has no batch axis: fixed shapes). ``workspace_mb``: TensorRT's workspace memory pool
    limit. ``timing_cache``: a file reused across builds (created if missing). The plan of every
    engine is ``buildplan.plan_build``'s (mapping and mixer FP32 whatever ``precision`` says).
    """
    say = report or log.info
    manifest = ExportManifest(onnx_dir)
    batch = parse_batch(batch)
    version = require_tensorrt()
    import tensorrt as trt

    plans = plan_build(features(trt), manifest, precision, batch, stages)   # refuses bad opsets before the GPU

    gpu = device_info(device_id)
    target = EngineTarget(tensorrt_version=version, gpu_name=gpu.name, compute_capability=gpu.compute_capability)
    out = Path(out_dir)
    prepare_folder(out)
    cache_file = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_file.read_bytes() if cache_file is not None and cache_file.is_file() else b""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    written: list[Path] = []
    for plan in plans:
        stage = plan.stage
        graph = manifest.graph(stage, plan.graph_precision)
        graph.verify()
        say(f"building {stage} ({plan.describe()}) on {gpu.name} ...")
        network = builder.create_network(network_flags(trt.NetworkDefinitionCreationFlag, plan))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(graph.path)):
            raise parser_failure(graph.path, version, [str(parser.get_error(i)) for i in range(parser.num_errors)])
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        for flag in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        for flag in plan.cleared_flags:
            config.clear_flag(getattr(trt.BuilderFlag, flag))
        if not config.set_timing_cache(config.create_timing_cache(cache_bytes), False):
            log.warning("timing cache %s does not match this GPU/TensorRT; starting a new one", cache_file)
            config.set_timing_cache(config.create_timing_cache(b""), False)
        shapes = plan.profile
        parsed = sorted(network.get_input(i).name for i in range(network.num_inputs))
        if parsed != sorted(shapes):
            raise EngineError(f"{graph.path}: TensorRT sees inputs {parsed}, the manifest lists {sorted(shapes)}; "
                              "re-export with `anonymixer export`")
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in shapes.items():
            profile.set_shape(name, trt.Dims(list(low)), trt.Dims(list(opt)), trt.Dims(list(high)))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"TensorRT {version} could not build the {stage} engine from {graph.path} "
                              "(see TensorRT's log above); try a larger --workspace or a smaller --batch")
        engine_bytes = bytes(memoryview(serialized))
        cache_bytes = bytes(memoryview(config.get_timing_cache().serialize()))
        if cache_file is not None:
            write_bytes(cache_file, cache_bytes)
        path = out / engine_filename(stage, precision)
        write_bytes(path, engine_bytes)
        write_json(sidecar_path(path), make_sidecar(
            stage, precision, target, plan, shapes, graph.path, sha256_file(graph.path),
            engine_sha256=sha256_file(path), engine_bytes=len(engine_bytes), onnx_dir=manifest.folder.resolve(),
            batch=batch, anonymixer_version=__version__))
        say(f"wrote {path} ({len(engine_bytes) >> 20} MiB)")
        written.append(path)
    # The mixer's code statistics and the model info travel with the engines; the engine folder's
    # manifest lists the sha256 of every engine, sidecar and the statistics.
    manifest.verify_file(STATS_FILE)
    write_bytes(out / STATS_FILE, (manifest.folder / STATS_FILE).read_bytes())
    write_manifest(out, engine_manifest(manifest.data, out, written, manifest.folder.resolve(), batch))
    return written

