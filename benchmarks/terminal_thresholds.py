"""The access terminal's default thresholds: FMR 1e-3 from synthetic impostors, per kind and recogniser.

    python benchmarks/terminal_thresholds.py [--identities 1000] [--out out/terminal_thresholds]

For each template kind (``face``, ``embedding``) and recogniser (``sface``, ``dlib``) on the
``faces64`` model: ``--identities`` synthetic identities (faces64 codes ``z ~ N(0, I)``, seed 0)
are templated under one evaluation key, every pair is an impostor pair, and the threshold is the
lowest with FMR <= 1e-3 on them (``terminal.thresholds.calibrate``). Prints the rows of
``anonymixer.terminal.thresholds.MEASURED`` and writes them to ``--out``/terminal_thresholds.json.
The same threshold is then checked against real people in ``benchmarks/terminal_templates.py``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from anonymixer.atomic import write_json
from anonymixer.eval.protocols import eval_key
from anonymixer.terminal.templates import TemplateMaker
from anonymixer.terminal.thresholds import DEFAULT_FMR, calibrate, impostor_scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--model", default="faces64")
    parser.add_argument("--fr", nargs="+", default=["sface", "dlib"])
    parser.add_argument("--kinds", nargs="+", default=["embedding", "face"])
    parser.add_argument("--out", default="out/terminal_thresholds")
    args = parser.parse_args(argv)
    key = eval_key(0, "A", "*")
    rows = []
    for fr in args.fr:
        for kind in args.kinds:
            start = time.perf_counter()
            maker = TemplateMaker(key, kind=kind, fr=fr, model=args.model)
            vectors = maker.synthetic_templates(args.identities, seed=0)
            scores = impostor_scores(vectors, np.arange(len(vectors)))
            result = calibrate(scores, DEFAULT_FMR, f"{args.identities} synthetic identities")
            model = "*" if kind == "embedding" else maker.model_id
            rows.append({"kind": kind, "recogniser": maker.fr_id, "model": model, "template": maker.version,
                         "fmr": DEFAULT_FMR, "threshold": round(result.threshold, 4),
                         "impostor_pairs": result.impostor_pairs, "measured_fmr": result.measured_fmr,
                         "impostor_mean": float(scores.mean()), "impostor_std": float(scores.std()),
                         "seconds": round(time.perf_counter() - start, 1)})
            print(f"    MeasuredThreshold({kind!r}, {maker.fr_id!r}, {model!r}, {maker.version!r}, "
                  f"{DEFAULT_FMR!r}, {round(result.threshold, 4)!r}, {result.impostor_pairs}),", flush=True)
            maker.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "terminal_thresholds.json", {"identities": args.identities, "model": args.model,
                                                   "machine": platform.processor() or platform.machine(),
                                                   "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
