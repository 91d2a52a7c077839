"""The console summary that ends ``anonymixer export`` and ``anonymixer calibrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .accuracy import ACCURACY_FILE, format_table
from .layout import FORMS, GRAPHS, MANIFEST


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def summary(folder: str | Path, manifest: dict[str, Any], seconds: float | None = None) -> str:
    """Files with sizes, FP32 parity against PyTorch, the accuracy table, INT8 calibration, next steps."""
    folder = Path(folder)
    model = manifest["model"]
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [f"export: {model['description']} -> {folder}{took}",
             f"  anonymixer {manifest['anonymixer_version']}, opset {manifest['opset']}, "
             f"output {manifest['output_resolution']}x{manifest['output_resolution']}, "
             f"layer mask {manifest['layer_mask']}, mixer {manifest['mixer_mode']}, psi {manifest['truncation_psi']}",
             "",
             f"{'graph':<10}{'precision':<11}{'file':<24}{'size':>10}   relative error"]
    total = 0
    for stage in GRAPHS:
        for precision in FORMS:
            entry = manifest["graphs"].get(stage, {}).get(precision)
            if not entry:
                continue
            size = entry["bytes"] + sum((folder / n).stat().st_size for n in entry.get("external_data", [])
                                        if (folder / n).is_file())
            total += size
            name = entry["file"] + (" (+.data)" if entry.get("external_data") else "")
            parity, error = entry.get("parity"), entry.get("error_vs_fp32")
            if parity:
                check = (f"torch parity {parity['batch_1']:.1e} / {parity['batch_3']:.1e} (batch 1 / 3) "
                         f"{'ok' if parity['passed'] else 'FAILED'}")
            else:
                check = f"vs fp32 {error['relative_error']:.1e}" if error else ""
            lines.append(f"{stage:<10}{precision:<11}{name:<24}{_size(size):>10}   {check}")
    lines.append(f"{'':<45}{_size(total):>10} in all")
    accuracy = folder / ACCURACY_FILE
    if "accuracy" in manifest and accuracy.is_file():
        lines += ["", f"accuracy against fp32 ({ACCURACY_FILE}):",
                  format_table(json.loads(accuracy.read_text(encoding="utf-8")))]
    calibration = manifest.get("calibration")
    if calibration:
        source = (f"{calibration['samples']} faces from {calibration['folder']}" if calibration["source"] == "folder"
                  else f"{calibration['samples']} faces drawn by the model (seed {calibration['seed']})")
        lines += ["", f"int8: calibrated on {source}, {calibration['method']}"]
        if calibration.get("skipped"):
            lines.append(f"  skipped {calibration['skipped']} unusable file(s), e.g. "
                         f"{calibration['skipped_examples'][0]}")
        for stage in GRAPHS:
            report = manifest["graphs"][stage].get("int8", {}).get("int8", {})
            kept = report.get("kept_fp")
            if isinstance(kept, dict):
                reasons: dict[str, int] = {}
                for reason in kept.values():
                    reasons[reason] = reasons.get(reason, 0) + 1
                why = ", ".join(f"{n} {r}" for r, n in reasons.items()) or "none"
                lines.append(f"  {stage}: {report['quantized_nodes']} conv(s) in INT8; kept in float: {why}")
            elif kept:
                lines.append(f"  {stage}: kept in FP32 entirely")
    if model.get("is_random"):
        lines += ["", "NOTE: random weights: graphs, shapes and latency are real; the faces are not"]
    return "\n".join([*lines, "", f"manifest: {folder / MANIFEST}", *next_steps(folder, manifest)])


def next_steps(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The commands that use what this folder holds, naming only the precisions it has, and how to
    add the others."""
    reduced = [p for p in ("fp16", "int8") if all(p in manifest["graphs"].get(s, {}) for s in ("encoder", "generator"))]
    choice = f" [--precision {'|'.join(reduced)}]" if reduced else ""
    lines = [f"run it:   anonymixer protect --onnx {folder}{choice} ...",
             f"TensorRT: anonymixer build --onnx {folder} --out ENGINE_DIR --precision "
             + ("|".join(reduced) if reduced else "fp32")]
    if "fp16" not in reduced:
        lines.append(f"FP16:     anonymixer export --model {manifest['model'].get('spec') or 'SPEC'} --out {folder} "
                     "--precision fp32,fp16 --force")
    if "int8" not in reduced:
        lines.append(f"INT8:     anonymixer calibrate --onnx {folder}")
    return lines
