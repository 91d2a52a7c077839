"""What the model checks of issue 21 cost at start: the manifest digest, the signature under a
trusted key, and the detector's one-detection probe.

    python benchmarks/model_checks.py [--model faces64] [--repeats 20]

Exports the model into a temporary folder, signs it with a fresh key, then times (median of
``--repeats``): reading and checking ``manifest.json`` (format, digest) without and with a trusted
key, opening the ONNX Runtime backend (which also hashes every graph file) without and with it,
and opening the YuNet detector (its probe included). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from anonymixer import signing
from anonymixer.export.onnx import export_onnx
from anonymixer.face.detect import YuNetDetector
from anonymixer.runtime.manifest import ExportManifest
from anonymixer.runtime.ort import OrtBackend


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="faces64")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, key = Path(tmp) / "export", Path(tmp) / "signer.key"
        export_onnx(args.model, folder, progress=False)
        signing.new_signing_key(key)
        signing.sign(folder, signing.load_signing_key(key))
        result: dict[str, object] = {"model": args.model, "repeats": args.repeats,
                                     "manifest_bytes": (folder / "manifest.json").stat().st_size,
                                     "folder_bytes": sum(p.stat().st_size for p in folder.iterdir())}
        for label, trusted in (("unsigned_check", None), ("trusted_key", str(key) + ".pub")):
            signing.trust(trusted)
            result[f"manifest_ms_{label}"] = median_ms(lambda: ExportManifest(folder), args.repeats)
            result[f"ort_open_ms_{label}"] = median_ms(lambda: OrtBackend(folder).close(), max(3, args.repeats // 4))
        signing.forget()
        result["yunet_open_ms"] = median_ms(YuNetDetector, args.repeats)
        result["loadavg"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
