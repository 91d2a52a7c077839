"""The benchmark's reports: ``bench.json`` (everything, raw samples included), ``bench.md`` (tables)
and ``bench.png`` (latency per stage per row; throughput against batch and frames in flight)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import prepare_folder, replacing, write_json, write_text
from .jetson import describe as describe_jetson
from .timers import AUTO_ITERS, FIXED_ITERS, SETTLE

STAGE_LABELS = {"encoder": "encoder", "mixer": "mixer", "generator": "generator",
                "detect_align": "detect+align", "paste": "paste", "frame": "frame"}


def ms(value: float) -> str:
    """Milliseconds with about three significant digits, never in exponent form."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _percentiles(item: dict[str, Any] | None) -> str:
    return "" if item is None else f"{ms(item['p50_ms'])} / {ms(item['p90_ms'])} / {ms(item['p99_ms'])}"


def _video_identity(data: dict[str, Any]) -> str:
    """The identity check the video rows ran (``identity.status``), or "" (reports before it was recorded)."""
    return next((item["identity_check"] for row in data["rows"] for item in row.get("video", [])
                 if "identity_check" in item), "")


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _memory(memory: dict[str, Any]) -> str:
    peak, start = memory.get("host_peak_mb"), memory.get("host_rss_start_mb")
    text = "" if peak is None else f"{peak:.0f}" + ("" if start is None else f" ({start:.0f})")
    device = memory.get("device_peak_allocated_mb") or memory.get("device_mb")
    return text + ("" if device is None else f"; GPU {device:.0f}")


def header_lines(data: dict[str, Any]) -> list[str]:
    machine, versions, settings = data["machine"], data["versions"], data["settings"]
    gpu = machine.get("gpu")
    lines = [f"Model `{settings['model']}` ({settings['model_description']}), output {settings['output_resolution']} px, "
             f"device `{settings['device']}`. Run {data['created']}, {data['wall_s']:.0f} s.",
             "",
             f"Machine: {machine['cpu']}, {machine['cores']} CPU cores ({machine['usable_cores']} usable), "
             f"{machine['ram_gb']} GB RAM" + (f" (CPU flags: {' '.join(machine['cpu_flags'])}; "
                                               f"INT8: {machine.get('cpu_int8', '?')})"
                                               if machine.get("cpu_flags") else "") + (f", GPU {gpu['name']} ({gpu['memory_gb']} GB)" if gpu else ", no GPU")
             + f"; load average {machine['load_average_start']} at start, {machine.get('load_average_end')} at end.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
             f"Settings: batch {settings['batches']}, in flight {settings['inflight']}; {_calls(settings)}; "
             f"inputs: {settings['faces']}."]
    if "jetson" in machine:
        lines.append(describe_jetson(machine["jetson"]) + ".")
    return lines


def _calls(settings: dict[str, Any]) -> str:
    """How many warm-up and timed calls each stage got (see ``bench.timers``)."""
    warm = ("no warm-up" if not settings["warmup"] else
            f"warm-up until times settle (at least {settings['warmup']} calls; {SETTLE.window}-call medians within "
            f"{SETTLE.tolerance:.0%}, at most {SETTLE.max_calls} calls or {SETTLE.max_s:g} s)")
    timed = (f"{settings['iters']} timed calls" if settings["iters"] else
             f"timed calls: at least {AUTO_ITERS.min_calls} and {AUTO_ITERS.min_s:g} s, at most {AUTO_ITERS.max_calls} "
             f"(whole frames and in-flight runs: {FIXED_ITERS})")
    return f"{warm}, then {timed}"


def warmup_lines(data: dict[str, Any]) -> list[str]:
    """The warm-up of each stage (calls, settled or not) and, for TensorRT rows, the trtexec lines."""
    lines = ["", "## Warm-up and timed calls per stage", "",
             "| row | B | stage | warm-up calls | settled | timed calls |", "|---|---|---|---|---|---|"]
    commands = []
    for row in data["rows"]:
        for entry in row["batches"]:
            for stage, item in entry["stages"].items():
                warm = item.get("warmup")
                if warm is not None:
                    lines.append(f"| {row['label']} | {entry['batch']} | {stage} | {warm['calls']} | "
                                 f"{'yes' if warm['settled'] else ('-' if not warm['calls'] else '**no**')} | {item['n']} |")
                if item.get("trtexec"):
                    commands.append(f"{item['trtexec']}    # {row['label']}, B={entry['batch']}, {stage}")
    if commands:
        lines += ["", "## The same engines with trtexec", "",
                  "Each TensorRT row's stage timed by NVIDIA's `trtexec` the way `anonymixer bench` times it "
                  "(inputs on the device, GPU time per call); compare its GPU Compute Time percentiles:", "",
                  "```", *commands, "```"]
    return lines


def markdown(data: dict[str, Any]) -> str:
    """``bench.md``: settings, the per-row table, throughput in flight, MACs and floor, notes."""
    lines = ["# anonymixer bench", "", *header_lines(data), "",
             "## Latency and ratios", "",
             "Stage and frame cells: p50 / p90 / p99 in ms per call on B faces (a frame holds B faces). "
             "frame: a whole photo (`protect PHOTO`), so each face's draw is chosen afresh: the artefact guard "
             "and the identity check, whose recogniser can be most of it (video tracks a face and chooses once: "
             "the section on whole frames in flight). "
             "faces/s: networks (encoder + mixer + generator p50) / whole frame. Speed-up: against "
             "`torch fp32` in this run, same B. PSNR: final image against `torch fp32`. GMAC/s: MACs per face "
             "(ONNX graph) over the networks' time per face. Memory: the row's resident-set peak (and the resident "
             "set at its start, left by earlier rows); on a GPU, device memory too.", "",
             "| row | B | encoder | mixer | generator | detect+align | paste | frame | faces/s | speed-up | "
             "PSNR dB | GMAC/s | floor | peak RSS MB (at start) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        for entry in row["batches"]:
            stages, networks = entry["stages"], entry["networks"]
            frame = entry.get("frame")
            speedup = entry["speedup"]
            psnr = row["accuracy"]["psnr_db"]
            floor = networks.get("floor_fraction")
            lines.append(
                f"| {row['label']} | {entry['batch']} | " + " | ".join(
                    _percentiles(stages.get(s)) for s in ("encoder", "mixer", "generator", "detect_align", "paste",
                                                          "frame"))
                + f" | {networks['faces_per_s']:.3g}" + (f" / {frame['faces_per_s']:.3g}" if frame else "")
                + f" | {_ratio(speedup['networks'])}" + (f" / {_ratio(speedup.get('frame'))}" if frame else "")
                + f" | {'ref' if row is data['rows'][0] else ('=' if psnr is None else f'{psnr:.1f}')}"
                + f" | {networks['gmac_per_s']:.1f} | {'' if floor is None else f'{floor:.1%}'}"
                + f" | {_memory(row['memory'])} |")
    if any(row["inflight"] for row in data["rows"]):
        lines += ["", "## Throughput with frames in flight", "",
                  "Batches of B faces through `Protector.protect_tensor_many` (one thread per stage on the CPU, "
                  "one CUDA stream per frame on a GPU); wall time over all batches.", "",
                  "| row | B | in flight | batches | faces/s | speed-up |", "|---|---|---|---|---|---|"]
        for row in data["rows"]:
            for item in row["inflight"]:
                lines.append(f"| {row['label']} | {item['batch']} | {item['inflight']} | {item['batches']} | "
                             f"{item['faces_per_s']:.3g} | {_ratio(item['speedup'])} |")
    if any(row.get("video") for row in data["rows"]):
        size = next(item["size"] for row in data["rows"] for item in row["video"])
        lines += ["", f"## Whole frames in flight ({size[0]}x{size[1]}, one face)", "",
                  "A stream of frames through `FaceProtector.process_many` (detect + align, networks, paste-back on "
                  "their own threads, N frames at once, output order kept), as `protect VIDEO` runs it: the face "
                  "is tracked, so its draw is chosen once (artefact guard, identity check) and the identity check "
                  "runs again on every 30th frame, which the p99 holds"
                  + (f" (identity check: {_video_identity(data)})" if _video_identity(data) else "")
                  + ". Frames per second of wall time, and each frame's latency from entering the pipeline to "
                  "leaving it. The latency table's frame column is a photo's instead: every call chooses its "
                  "face's draw afresh.", "",
                  "| row | in flight | frames | fps | latency p50 ms | latency p99 ms | vs in flight 1 |",
                  "|---|---|---|---|---|---|---|"]
        for row in data["rows"]:
            for item in row.get("video", []):
                lines.append(f"| {row['label']} | {item['inflight']} | {item['frames']} | {item['fps']:.3g} | "
                             f"{ms(item['latency']['p50_ms'])} | {ms(item['latency']['p99_ms'])} | "
                             f"{_ratio(item.get('vs_inflight_1'))} |")
    if any("warmup" in item for row in data["rows"] for e in row["batches"] for item in e["stages"].values()):
        lines += warmup_lines(data)
    options = data["settings"].get("ort_session_options")
    if options:
        lines += ["", "## ONNX Runtime session options", ""]
        lines += [f"- `{name}`: {why}" for name, why in options.items()]
    lines += ["", "## MACs per face and the floor", "", f"Counted: {data['macs']['counted']}.", ""]
    peak = data["peak"]
    if peak:
        lines.append(f"Peak: **{peak['name']}**, vendor peak, dense ({peak['source']}): fp32 (TF32 where present) "
                     f"{peak['tf32'] or peak['fp32']}, fp16 {peak['fp16']}, int8 {peak['int8']} TFLOPS/TOPS. "
                     "Floor: the MACs' time at that peak; the table's floor column is floor / measured time.")
    else:
        lines.append("No device peak (a CPU, and no --peak-tflops/--peak-device): MACs and achieved GMAC/s only.")
    lines += ["", "| stage | GMAC per face | by operator |", "|---|---|---|"]
    for stage, per_precision in data["macs"]["per_face"].items():
        count = per_precision["fp32"]
        ops = ", ".join(f"{op} {value / 1e9:.3g}" for op, value in sorted(count["by_op"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {stage} | {count['total'] / 1e9:.4g} | {ops} |")
    if data["notes"] or data["skipped"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in data["notes"]]
        lines += [f"- skipped `{s['backend']} {s['precision']}`: {s['reason']}" for s in data["skipped"]]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """``bench.png``: per-stage latency per face at the smallest batch (log scale), faces/s against
    batch, and faces/s against frames in flight (largest batch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    stages = [s for s in STAGE_LABELS if s != "frame" and any(s in e["stages"] for r in rows for e in r["batches"])]
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        entry = row["batches"][0]
        values = [entry["stages"][s]["p50_ms"] / entry["batch"] if s in entry["stages"] else 0.0 for s in stages]
        axes[0].bar([k + i * width for k in range(len(stages))], values, width, label=row["label"])
    axes[0].set_xticks([k + width * (len(rows) - 1) / 2 for k in range(len(stages))], [STAGE_LABELS[s] for s in stages])
    axes[0].set_yscale("log")
    axes[0].set_ylabel(f"ms per face (p50, batch {rows[0]['batches'][0]['batch']})")
    axes[0].set_title("latency per stage")
    for row in rows:
        batches = [e["batch"] for e in row["batches"]]
        line = axes[1].plot(batches, [e["networks"]["faces_per_s"] for e in row["batches"]], "o-", label=row["label"])
        if all("frame" in e for e in row["batches"]):
            axes[1].plot(batches, [e["frame"]["faces_per_s"] for e in row["batches"]], "s--", color=line[0].get_color(),
                         alpha=0.6)
        top = max(batches)
        items = [item for item in row["inflight"] if item["batch"] == top]
        axes[2].plot([item["inflight"] for item in items], [item["faces_per_s"] for item in items], "o-", label=row["label"])
    axes[1].set_xticks(sorted({e["batch"] for r in rows for e in r["batches"]}))
    axes[2].set_xticks(sorted({i["inflight"] for r in rows for i in r["inflight"]}))
    axes[1].set_xlabel("batch (faces per call)")
    axes[1].set_ylabel("faces/s (solid: networks, dashed: whole frame)")
    axes[1].set_title("throughput against batch")
    axes[2].set_xlabel("frames in flight")
    axes[2].set_ylabel(f"faces/s (batch {max(e['batch'] for e in rows[0]['batches'])})")
    axes[2].set_title("throughput with frames in flight")
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    machine = data["machine"]
    figure.suptitle(f"anonymixer bench: {data['settings']['model']} on {machine['cpu']} "
                    f"({machine['cores']} cores{', ' + machine['gpu']['name'] if machine.get('gpu') else ''}), "
                    f"{data['created'][:10]}", fontsize="medium")
    figure.tight_layout()
    with replacing(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)


def write_reports(data: dict[str, Any], out: Path) -> list[Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out``; return their paths."""
    prepare_folder(out)
    paths = [out / "bench.json", out / "bench.md", out / "bench.png"]
    write_json(paths[0], data, indent=1)
    write_text(paths[1], markdown(data))
    try:
        plot(data, paths[2])
    except ImportError:  # matplotlib is optional for the runtime
        print("bench.png not written: the plot needs matplotlib (pip install matplotlib)")
        return paths[:2]
    return paths
