"""The access terminal's latency on this CPU: enrol, verify, and identify among 10,000 templates.

    python benchmarks/terminal_latency.py [--kind embedding] [--fr sface] [--runs 100] [--gallery 10000]

Through the facade on a real store (WAL, ``synchronous=FULL``, an audit row per call), a photo in
memory (decoding is the caller's): ``enrol`` of one photo (detection, recogniser, generator for the
displayed face, one transaction), ``verify`` of a photo against one enrolled name, and ``identify``
after ``--gallery`` synthetic templates (random unit vectors: matching costs the same as for real
ones) have been added, whole and its gallery match alone. The two packaged photos alternate,
mirrored or not. Reports p50/p99 in ms, the load average and the CPU flags beside them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anonymixer.atomic import write_json
from anonymixer.bench.machine import cpu_flags, cpu_model, load_average
from anonymixer.bench.stats import percentile
from anonymixer.eval.protocols import eval_key
from anonymixer.face.io import read_photo
from anonymixer.face.photos import packaged_photo
from anonymixer.terminal import Terminal
from anonymixer.terminal.store import Store


def timed(samples: list[float], call: Any, cpu: list[float] | None = None) -> Any:
    """Wall time of ``call`` into ``samples`` (ms); with ``cpu``, this process's CPU time too (all
    threads): on a machine shared with other work, wall time includes waiting for a core."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = call()
    samples.append((time.perf_counter() - start) * 1000.0)
    if cpu is not None:
        cpu.append((time.process_time() - start_cpu) * 1000.0)
    return result


def summary(samples: list[float]) -> dict[str, float]:
    return {"runs": len(samples), "p50_ms": round(percentile(samples, 50), 2), "p99_ms": round(percentile(samples, 99), 2),
            "max_ms": round(max(samples), 2)}


def synthetic_gallery(terminal: Terminal, count: int, seed: int = 0) -> None:
    """``count`` subjects with one random unit template each, in one transaction."""
    assert terminal.maker is not None
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, terminal.maker.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    columns = {"kind": terminal.maker.kind, "model_id": terminal.maker.model_id,
               "model_digest": terminal.maker.model_digest, "recogniser": terminal.maker.fr_id}
    with terminal.store.write() as conn:
        for i, vector in enumerate(vectors):
            Store.add_templates(conn, f"synthetic {i:05d}", [vector], None, columns, str(terminal.fingerprint))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", default="embedding")
    parser.add_argument("--fr", default="sface")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--gallery", type=int, default=10_000)
    parser.add_argument("--out", default="out/terminal_latency")
    args = parser.parse_args(argv)
    photos = [read_photo(packaged_photo(name))[0] for name in ("astronaut", "grace_hopper")]
    photos += [np.ascontiguousarray(p[:, ::-1]) for p in photos]
    load_before = load_average()
    times: dict[str, list[float]] = {"enrol": [], "verify": [], "identify": [], "identify_match": [],
                                     "enrol_cpu": [], "verify_cpu": [], "identify_cpu": []}
    with tempfile.TemporaryDirectory() as folder:
        key = eval_key(0, "A", "*")
        with Terminal.open(Path(folder) / "site.db", key, kind=args.kind, fr=args.fr) as terminal:
            terminal.enrol("warm-up", [photos[0]])
            terminal.verify("warm-up", photos[0])
            for i in range(max(10, args.runs // 5)):
                timed(times["enrol"], lambda: terminal.enrol(f"person {i}", [photos[i % 2]]), times["enrol_cpu"])
            for i in range(args.runs):
                timed(times["verify"], lambda: terminal.verify("person 0", photos[i % 4]), times["verify_cpu"])
            synthetic_gallery(terminal, args.gallery)
            assert terminal.maker is not None
            probe = terminal.maker.template(photos[0], terminal.maker.probe_face(photos[0], "probe")).vector
            gallery = terminal.store.gallery(str(terminal.fingerprint))
            for i in range(args.runs):
                timed(times["identify"], lambda: terminal.identify(photos[i % 4]), times["identify_cpu"])
                timed(times["identify_match"], lambda: gallery.best_per_subject(probe))
            templates = len(terminal.store.gallery(str(terminal.fingerprint)).names)
    report = {"kind": args.kind, "fr": args.fr, "gallery_templates": templates,
              "cpu": cpu_model(), "cpu_flags": cpu_flags(), "loadavg_before": load_before,
              "loadavg_after": load_average(), **{name: summary(s) for name, s in times.items()}}
    for name in times:
        print(f"{name}: p50 {report[name]['p50_ms']} ms, p99 {report[name]['p99_ms']} ms")
    print(f"loadavg before {load_before}, after {report['loadavg_after']}; {cpu_model()}; {' '.join(cpu_flags())}")
    write_json(Path(args.out) / f"terminal_latency_{args.kind}_{args.fr}.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
