"""What the searches for missed faces cost and find (issue 21): quarter-turn retry, tiled detection.

    python benchmarks/missed_faces.py [--out benchmarks/results/missed_faces.json] [--repeats 5]

0. The smallest face YuNet finds at its input scale: each packaged face placed at random on 12
   smooth random 640x480 canvases per box width (12-48 px); a hit is a detection centred on it.
1. The quarter-turn retry (``search.find_faces``): wall time of detection on a frame WITH a face
   (upright: one call, no retry) and on a face-less frame (the retry's three more calls), at
   640x480 and 1920x1080, in one run so that the ratios compare like with like.
2. Tiled detection (``search.TiledDetector``, what ``open_detector("yunet")`` returns) against
   the old single call on a copy shrunk to 1920 px: recall of face crops of the packaged photos
   (astronaut, Grace Hopper) placed at box widths 24-600 px on 640x480, 4000x3000 and 8000x6000
   canvases, and the wall time of one detection.

3. The damaged-JPEG check (``face.io.jpeg_damage``: strict libjpeg-turbo decode at 1/8 scale)
   against OpenCV's full decode of the same 4000x3000 JPEG.

OpenCV runs on one thread, as in ``FaceProtector``. Prints a Markdown block for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anonymixer.face.detect import YuNetDetector
from anonymixer.face.io import jpeg_damage, read_image
from anonymixer.face.photos import packaged_photo
from anonymixer.face.search import TiledDetector, find_faces

BOXES = (24, 32, 48, 64, 96, 200, 600)


def face_crops() -> list[tuple[np.ndarray, float]]:
    """Each packaged photo's face with a margin, and its YuNet box width as a fraction of the crop."""
    yunet = YuNetDetector()
    crops = []
    for name in ("astronaut", "grace_hopper"):
        image = read_image(packaged_photo(name))
        x, y, w, h = (float(v) for v in yunet.detect(image)[0].box)
        half = 0.8 * max(w, h)
        x0, y0 = int(max(0, x + w / 2 - half)), int(max(0, y + h / 2 - half))
        crop = image[y0:int(y + h / 2 + half), x0:int(x + w / 2 + half)]
        crops.append((crop, w / crop.shape[1]))
    return crops


def canvas(width: int, height: int, boxes: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, list]:
    """A smooth random canvas with both faces at each box width that fits, one grid cell each."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    image = np.ascontiguousarray(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)[:height, :width])
    crops = face_crops()
    cells = [(crop, frac, box) for box in boxes for crop, frac in crops]
    columns = max(1, int(np.ceil(np.sqrt(len(cells) * width / height))))
    rows = -(-len(cells) // columns)
    placed = []
    for i, (crop, frac, box) in enumerate(cells):
        side = max(8, round(box / frac))
        cell_w, cell_h = width // columns, height // rows
        if side >= min(cell_w, cell_h):
            continue
        small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        x = (i % columns) * cell_w + int(rng.integers(0, cell_w - side))
        y = (i // columns) * cell_h + int(rng.integers(0, cell_h - side))
        image[y:y + side, x:x + side] = small
        placed.append((x + side / 2, y + side / 2, side, box))
    return image, placed


def timed(call, repeats: int) -> float:
    """Median wall time of ``call()`` in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def smallest_face(tries: int = 12) -> list[dict]:
    yunet = YuNetDetector()
    rng = np.random.default_rng(0)
    rows = []
    for box in (12, 16, 20, 24, 32, 48):
        row: dict = {"box": box}
        for (crop, frac), name in zip(face_crops(), ("astronaut", "grace_hopper")):
            side = max(4, round(box / frac))
            small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
            hits = 0
            for _ in range(tries):
                image, _ = canvas(640, 480, (), seed=int(rng.integers(1 << 30)))
                x, y = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))
                image[y:y + side, x:x + side] = small
                hits += any(abs(float(f.box[0] + f.box[2] / 2) - (x + side / 2)) < side / 2
                            and abs(float(f.box[1] + f.box[3] / 2) - (y + side / 2)) < side / 2
                            for f in yunet.detect(image))
            row[name] = f"{hits}/{tries}"
        rows.append(row)
    return rows


def turn_retry(repeats: int) -> list[dict]:
    yunet = YuNetDetector()
    rows = []
    for width, height in ((640, 480), (1920, 1080)):
        with_face, _ = canvas(width, height, (min(200, height // 3),))
        faceless, _ = canvas(width, height, ())
        rows.append({"size": f"{width}x{height}",
                     "with_face_ms": timed(lambda: find_faces(yunet, with_face), repeats),
                     "faceless_ms": timed(lambda: find_faces(yunet, faceless), repeats),
                     "faceless_upright_only_ms": timed(lambda: yunet.detect(faceless), repeats)})
    return rows


def tiling(repeats: int) -> list[dict]:
    yunet = YuNetDetector()
    tiled = TiledDetector(yunet)
    rows = []
    for width, height in ((640, 480), (4000, 3000), (8000, 6000)):
        image, placed = canvas(width, height, BOXES, seed=1)
        for name, detector in (("shrunk to 1920 (before)", yunet), ("tiled (now)", tiled)):
            faces = detector.detect(image)
            hits = [any(abs(float(f.box[0] + f.box[2] / 2) - cx) < side / 2
                        and abs(float(f.box[1] + f.box[3] / 2) - cy) < side / 2 for f in faces)
                    for cx, cy, side, _ in placed]
            rows.append({"size": f"{width}x{height}", "detector": name, "placed": len(placed), "found": sum(hits),
                         "missed_boxes": sorted(box for (_, _, _, box), hit in zip(placed, hits) if not hit),
                         "detections": len(faces), "ms": timed(lambda: detector.detect(image), repeats)})
    return rows


def jpeg_check(repeats: int) -> dict:
    image, _ = canvas(4000, 3000, (48, 200), seed=2)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    buffer = np.frombuffer(data, np.uint8)
    return {"size": "4000x3000", "bytes": len(data),
            "check_ms": timed(lambda: jpeg_damage(data), repeats),
            "opencv_decode_ms": timed(lambda: cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED), repeats)}


def machine() -> dict:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = " ".join(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "sse4")))
                break
        load = Path("/proc/loadavg").read_text().strip()
    except OSError:
        load = "?"
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "flags": flags,
            "loadavg": load, "opencv": cv2.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/missed_faces.json"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    before = machine()
    results: dict[str, Any] = {"machine": before, "smallest_face": smallest_face(), "turn_retry": turn_retry(args.repeats), "tiling": tiling(max(1, args.repeats // 2)),
               "jpeg_check": jpeg_check(args.repeats)}
    results["machine"]["loadavg_after"] = machine()["loadavg"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {before}, loadavg after: {results['machine']['loadavg_after']}\n")
    print("| face box | astronaut | Grace Hopper |\n|---|---|---|")
    for row in results["smallest_face"]:
        print(f"| {row['box']} px | {row['astronaut']} | {row['grace_hopper']} |")
    print()
    print("| frame | with a face (no retry) | face-less, upright only | face-less with retry | retry cost |")
    print("|---|---|---|---|---|")
    for row in results["turn_retry"]:
        print(f"| {row['size']} | {row['with_face_ms']:.1f} ms | {row['faceless_upright_only_ms']:.1f} ms | "
              f"{row['faceless_ms']:.1f} ms | x{row['faceless_ms'] / row['faceless_upright_only_ms']:.2f} |")
    print("\n| photo | detector | faces found (box 24-600 px) | missed boxes | one detection |")
    print("|---|---|---|---|---|")
    for row in results["tiling"]:
        print(f"| {row['size']} | {row['detector']} | {row['found']}/{row['placed']} | "
              f"{row['missed_boxes'] or '-'} | {row['ms'] / 1000:.2f} s |")
    check = results["jpeg_check"]
    print(f"\ndamaged-JPEG check on a {check['size']} JPEG ({check['bytes'] // 1024} KB): {check['check_ms']:.1f} ms; "
          f"OpenCV's full decode of it: {check['opencv_decode_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
