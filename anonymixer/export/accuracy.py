"""How far the FP16 and INT8 graphs are from FP32: per stage, and on the final protected image.

On a fixed, seeded set of inputs (``ACCURACY_SAMPLES`` faces drawn by the model's own FP32 graphs,
one random key each), every graph of a precision gets the FP32 pipeline's inputs for that stage,
so a stage's error is its own. Then the whole pipeline runs in that precision (mapping included)
and its image is compared with the FP32 pipeline's: relative error and PSNR, images clipped to
[-1, 1] (peak-to-peak 2, as 0..255 would be 255).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..atomic import write_json
from ..calibration import GraphSet, stage_feeds, synthetic_faces
from .graphfile import relative_error
from .layout import GRAPHS

ACCURACY_FILE = "accuracy.json"
ACCURACY_SAMPLES = 4
ACCURACY_SEED = 2024
_OUTPUT = {"encoder": "w_real", "mapping": "w_key", "mixer": "w_prot", "generator": "image"}


def psnr(image: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of ``image`` against ``ref``, both ``(B, 3, R, R)`` in [-1, 1] (clipped); inf if equal."""
    diff = np.clip(image, -1, 1).astype(np.float64) - np.clip(ref, -1, 1).astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def accuracy_report(folder: str | os.PathLike[str], precisions: Sequence[str], progress: bool = True,
                    samples: int = ACCURACY_SAMPLES, seed: int = ACCURACY_SEED) -> dict[str, Any]:
    """Measure ``precisions`` (besides fp32) against FP32 and write ``folder/accuracy.json``.

    Returns ``{"samples", "seed", "inputs", "precisions": {p: {"stages": {stage:
    {"relative_error", "max_abs_error"}}, "pipeline": {"image_relative_error", "image_psnr_db"}}}}``;
    a PSNR of ``null`` means identical images.
    """
    folder = Path(folder)
    fp32 = GraphSet(folder, "fp32", verify=False)
    faces = synthetic_faces(fp32, samples, seed).faces
    feeds = stage_feeds(fp32, faces, seed + 1)
    ref = {stage: fp32.run(stage, feeds[stage]) for stage in GRAPHS}
    fp32.close()
    report: dict[str, Any] = {
        "samples": samples, "seed": seed,
        "inputs": "faces drawn by the FP32 graphs (z -> mapping -> generator -> resize), one random key each",
        "psnr": "images clipped to [-1, 1], peak-to-peak 2", "precisions": {}}
    others = [p for p in precisions if p != "fp32"]
    with tqdm(total=len(others) * (len(GRAPHS) + 1), desc="accuracy", unit="step",
              disable=None if progress else True) as bar:
        for precision in others:
            graphs = GraphSet(folder, precision, verify=False)
            stages: dict[str, Any] = {}
            for stage in GRAPHS:
                out = graphs.run(stage, feeds[stage])
                stages[stage] = {"relative_error": relative_error(out, ref[stage]),
                                 "max_abs_error": float(np.max(np.abs(out - ref[stage])))}
                bar.update(1)
            w_prot = graphs.run("mixer", {**feeds["mixer"], "w_real": graphs.run("encoder", {"face": faces})})
            image = graphs.run("generator", {"w_prot": w_prot})
            db = psnr(image, ref["generator"])
            report["precisions"][precision] = {
                "stages": stages,
                "pipeline": {"image_relative_error": relative_error(image, ref["generator"]),
                             "image_psnr_db": None if math.isinf(db) else db}}
            graphs.close()
            bar.update(1)
    write_json(folder / ACCURACY_FILE, report, indent=1)
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as a console table: one row per precision, relative error per stage, image PSNR."""
    header = f"{'precision':<10}" + "".join(f"{s:>12}" for s in GRAPHS) + f"{'image PSNR':>13}"
    lines = [header, "-" * len(header)]
    for precision, row in report.get("precisions", {}).items():
        cells = "".join(f"{row['stages'][s]['relative_error']:>12.2e}" for s in GRAPHS)
        db = row["pipeline"]["image_psnr_db"]
        lines.append(f"{precision:<10}{cells}{'identical' if db is None else f'{db:.1f} dB':>13}")
    lines.append(f"(relative error ||x - x_fp32|| / ||x_fp32|| per stage on {report.get('samples')} seeded "
                 "samples; image PSNR of the whole pipeline against FP32)")
    return "\n".join(lines)
