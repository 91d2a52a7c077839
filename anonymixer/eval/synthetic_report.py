"""Reports of ``evaluate --synthetic``: synthetic.json, synthetic.md (the mode table),
project_sweep.png (utility against the stolen-key attack) and faces.png (original | key A | key B)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import prepare_folder, replacing, write_json, write_text
from ..provenance import versions
from .report import _f, _pyplot
from .synthetic import THRESHOLD, SyntheticResult


def write_synthetic_reports(result: SyntheticResult, out_dir: str | Path) -> list[Path]:
    """Write the four files into ``out_dir`` (created); return their paths."""
    out = Path(out_dir)
    prepare_folder(out)
    data = {"format": "anonymixer-eval-synthetic", "version": 1, "settings": result.settings,
            "software": versions(["torch", "onnxruntime", "dlib", "opencv-python-headless"]),
            "baseline": result.baseline, "thresholds": result.thresholds, "seconds": result.seconds,
            "modes": {k: {n: v for n, v in row.items() if n != "faces"} for k, row in result.modes.items()},
            "project_sweep": result.sweep}
    paths = [out / "synthetic.json", out / "synthetic.md"]
    write_json(paths[0], data, indent=1, default=float)
    write_text(paths[1], "\n".join(markdown(result)) + "\n")
    paths.append(plot_sweep(result, out / "project_sweep.png"))
    paths.append(plot_faces(result, out / "faces.png"))
    return paths


def row_figures(row: dict[str, Any]) -> dict[str, float | None]:
    """The table's numbers of one mode (rates at the original system's FAR = 0.1 % threshold)."""
    m = row["utility"].get("metrics") or {}
    return {"eer": m.get("eer"), "tar": (m.get("tar_at_far") or {}).get("0.001", {}).get("tar"),
            "psr": row["psr"].get(THRESHOLD), "d_sys": row["d_sys"], "revocability": row["revocability"].get(THRESHOLD),
            "asr_stolen": row["asr"]["stolen_key"].get(THRESHOLD), "asr_no_key": row["asr"]["no_key"].get(THRESHOLD)}


def markdown(result: SyntheticResult) -> list[str]:
    base = result.baseline.get("metrics") or {}
    s = result.settings
    lines = [f"Synthetic evaluation: {s['model']}, {s['identities']} identities, FR {s['fr']}, "
             f"{'through the encoder' if s['through_encoder'] else 'generator only (no encoder): protected = G(mix(w))'}; "
             f"mated sample = code + {s['code_noise']} whitened noise + camera changes. Original system: "
             f"EER {_f(base.get('eer'))}, TAR@FAR1e-3 {_f((base.get('tar_at_far') or {}).get('0.001', {}).get('tar'))}; "
             f"rates at its FAR = 0.1 % threshold ({_f(result.thresholds[THRESHOLD])}).", "",
             "| mode | protected EER | TAR@FAR1e-3 | protection success | D_sys (keys A/B) | revocability "
             "| stolen-key ASR | no-key ASR |", "|---|---|---|---|---|---|---|---|"]
    rows = [(label, row) for label, row in result.modes.items()]
    rows += [(f"project r={row['rank']}", row) for row in result.sweep]
    for label, row in rows:
        f = row_figures(row)
        lines.append(f"| {label} | {_f(f['eer'])} | {_f(f['tar'])} | {_f(f['psr'])} | {_f(f['d_sys'])} "
                     f"| {_f(f['revocability'])} | {_f(f['asr_stolen'])} | {_f(f['asr_no_key'])} |")
    lines += ["", f"{result.seconds / 60:.1f} min."]
    return lines


def plot_sweep(result: SyntheticResult, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.2))
    points = [(row["rank"], row_figures(row)) for row in result.sweep]
    for key, label in (("tar", "utility: TAR @ FAR 1e-3 (same key)"),
                       ("asr_stolen", "stolen-key attack success (lower is better)"),
                       ("psr", "protection success")):
        axis.plot([r for r, _ in points], [f[key] for _, f in points], marker="o", label=label)
    axis.set_xlabel("project rank r (kept dimensions of the whitened code)")
    axis.set_ylabel("rate")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(f"project: utility vs irreversibility ({result.settings['identities']} identities)", fontsize=9)
    figure.tight_layout()
    with replacing(path) as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)
    return path


def plot_faces(result: SyntheticResult, path: Path) -> Path:
    """One block per mode: rows original, key A, key B (probe) for the first identities."""
    blocks = []
    for row in result.modes.values():
        faces = row["faces"]
        blocks.append(np.concatenate([np.concatenate(list(faces[k]), axis=1)
                                      for k in ("enrol", "protected", "protected_b")], axis=0))
    plt = _pyplot()
    figure, axes = plt.subplots(len(blocks), 1, figsize=(8, 3.2 * len(blocks)), squeeze=False)
    for axis, label, block in zip(axes[:, 0], result.modes, blocks):
        axis.imshow(block)
        axis.set_title(f"{label}: original / key A / key B (mated probe)", fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    with replacing(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return path
