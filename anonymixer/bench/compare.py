"""The figures derived from a run's measurements: per-face rates, ratios, accuracy, the floor.

- **per face**: a call on B faces that takes ``t`` ms costs ``t / B`` ms per face; the networks'
  cost is the sum of the encoder, mixer and generator medians (p50);
- **speed-up**: the PyTorch eager FP32 row's per-face time over this row's, at the same batch
  (and, for throughput, the same frames in flight), all measured in the same run;
- **accuracy**: PSNR of this row's final image (the generator's output at the largest batch)
  against the FP32 PyTorch row's, images clipped to [-1, 1] (``export.accuracy.psnr``);
- **achieved GMAC/s**: MACs per face (``macs``) over the per-face time; with a device peak, the
  **floor** is the MACs' time at that peak and the **fraction** the floor over the measured time.
"""

from __future__ import annotations

import math
from typing import Any

from ..runtime.base import FRAME_STAGES
from .peaks import DevicePeak, floor_ms


def derive(rows: list[dict[str, Any]], macs: dict[str, Any], peak: DevicePeak | None) -> None:
    """Add the derived figures to ``rows`` in place (the first row is the baseline); drop the images."""
    from ..export.accuracy import psnr

    for row in rows:
        graphs = "fp32" if row["backend"] == "torch" else row["precision"]
        for entry in row["batches"]:
            _per_face(entry, {stage: int(macs[stage][graphs]["total"]) for stage in FRAME_STAGES},
                      row["precision"], peak)
    base = rows[0]
    base_batches = {entry["batch"]: entry for entry in base["batches"]}
    base_inflight = {(item["batch"], item["inflight"]): item for item in base["inflight"]}
    for row in rows:
        for entry in row["batches"]:
            ref = base_batches[entry["batch"]]
            entry["speedup"] = {"networks": ref["networks"]["ms_per_face"] / entry["networks"]["ms_per_face"]}
            if "frame" in entry and "frame" in ref:
                entry["speedup"]["frame"] = ref["frame"]["ms_per_face"] / entry["frame"]["ms_per_face"]
        for item in row["inflight"]:
            item["speedup"] = item["faces_per_s"] / base_inflight[(item["batch"], item["inflight"])]["faces_per_s"]
        one = next((item for item in row.get("video", []) if item["inflight"] == 1), None)
        for item in row.get("video", []):
            item["vs_inflight_1"] = None if one is None else item["fps"] / one["fps"]
        db = psnr(row["image"], base["image"])
        row["accuracy"] = {"psnr_db": None if math.isinf(db) else db, "faces": int(len(row["image"])),
                           "reference": "torch fp32 (this run)",
                           "note": "reference row" if row is base else ("identical to the reference" if math.isinf(db)
                                                                        else "")}
    for row in rows:
        del row["image"]


def _per_face(entry: dict[str, Any], macs: dict[str, int], precision: str, peak: DevicePeak | None) -> None:
    batch, stages = entry["batch"], entry["stages"]
    for stage in FRAME_STAGES:
        item = stages[stage]
        item["macs_per_face"] = macs[stage]
        item["gmac_per_s"] = macs[stage] * batch / (item["p50_ms"] / 1000.0) / 1e9 if macs[stage] else None
    ms = sum(stages[stage]["p50_ms"] for stage in FRAME_STAGES) / batch
    total = sum(macs.values())
    networks: dict[str, Any] = {"ms_per_face": ms, "faces_per_s": 1000.0 / ms, "macs_per_face": total,
                                "gmac_per_s": total / (ms / 1000.0) / 1e9}
    if peak is not None:
        tflops = peak.tflops(precision)
        floor = floor_ms(total, tflops)
        networks.update(peak_tflops=tflops, floor_ms_per_face=floor, floor_fraction=floor / ms)
    entry["networks"] = networks
    if "frame" in stages:
        frame_ms = stages["frame"]["p50_ms"] / batch
        entry["frame"] = {"ms_per_face": frame_ms, "faces_per_s": 1000.0 / frame_ms}
