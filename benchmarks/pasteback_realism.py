"""Do protected faces look like faces, and are they strangers to their originals? Before/after paste-back.

    python benchmarks/pasteback_realism.py [--photos out/photos] [--out out/pasteback_realism]
                                           [--styles legacy,default] [--keys 3]

Every face of the real-photo sets that the faces64 benchmarks use (``faces64_encoder.py``: ten
people of several archives, 35 more people; ``faces64_real_people.py``: 79 photos of nine people;
duplicates counted once) plus the two packaged demo photos, protected by the whole-frame pipeline
(``FaceProtector.process``: YuNet, faces64, paste-back) under ``--keys`` fixed evaluation keys, with
each paste-back style of ``--styles`` (``legacy``: the fixed feathered oval of before issue 23;
``default``: the current one). Per protected face, judged by dlib, which the pipeline never uses:

- ``hog``: dlib's HOG detector finds a face on the protected photo (a detection whose centre lies in
  the original face's box and whose size is within a factor 2 of it), on a square window of twice
  the face around it, scaled so that the face is about 100 px; the same on the original photo;
- ``distance``: dlib's 128-d distance between the protected face and its original (both aligned by
  dlib's own 5-point predictor on the photo); under 0.6 dlib calls them one person (a leak);
- ``seam``: the colour step that the paste adds at its region's border: at points every 2 px along
  the 0.5 contour of the paste's alpha, the Lab distance (CIE76) between the mean colour a fifth of
  the interocular distance inside and outside, on the protected photo minus the same on the
  original (clipped at 0), averaged along the border;
- ``tone``: how far the protected face's skin is from the original's (CIE76 between the mean Lab of
  ``blend.skin`` in the inner face, the five landmarks' hull grown ``region.INNER`` times, on each
  photo). The original's face is continuous with its own neck, so a face of its tone is too; this is
  that proxy, measured where the neck need not be visible;
- ``paste_ms``: the pipeline's paste phase per face (guard and re-draws included).

Then the paste phase alone at 640x480, per key: the two demo photos letterboxed to 640x480, each
pasted ``--repeat`` times; min and median ms per face (a face that the artefact guard re-draws runs the
networks again inside the paste phase: ``timed_faces_redrawn`` says how many of the two did). Writes ``--out``/pasteback_realism.json, a table to stdout,
and ``--out``/faces_<style>_<key>.png (protected faces of the real sets, cropped, one strip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anonymixer.atomic import write_json
from anonymixer.eval.fr import DlibRecognizer, sface
from anonymixer.eval.protocols import eval_key
from anonymixer.face import blend
from anonymixer.face.detect import Face, open_detector
from anonymixer.face.io import write_image
from anonymixer.face.paste import PASTE_STYLES
from anonymixer.face.region import inner_hull, polygon_mask
from anonymixer.face.photos import packaged_photo
from anonymixer.face.pipeline import FaceProtector, FrameResult
from anonymixer.runtime import Protector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faces64_encoder import DLIB_MATCH, MIN_SIDE, fetch_more_people, fetch_photos  # noqa: E402
from faces64_real_people import BALD_GUYS, JOHNS, REQUIREMENT  # noqa: E402

from faces64_encoder import DLIB_EXAMPLES, archive_member  # noqa: E402  isort: skip

HOG_FACE_PX = 100     # the face's box side after scaling, for the HOG judge (its window is 80 px)
SEAM_OFFSET = 0.2     # inside/outside sample distance from the border, in interocular distances
SEAM_RADIUS = 0.06    # half-side of the colour sample window, in interocular distances


@dataclass
class Photo:
    """A photo and the indices (in YuNet's detections) of the faces that the sets pick in it."""

    path: Path
    faces: set[int]
    demo: bool = False


def _read(path: Path) -> np.ndarray:
    """A photo as ``(H, W, 3) uint8 BGR`` (OpenCV: the archives hold PPM too, which ``read_photo`` refuses)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not an image")
    return image


def _nearest(found: list[Face], centre: tuple[float, float]) -> int:
    return min(range(len(found)), key=lambda i: float((found[i].box[0] + found[i].box[2] / 2 - centre[0]) ** 2
                                                      + (found[i].box[1] + found[i].box[3] / 2 - centre[1]) ** 2))


def _largest(found: list[Face], n: int = 1) -> list[int]:
    return sorted(range(len(found)), key=lambda i: -float(found[i].box[2] * found[i].box[3]))[:n]


def collect_photos(folder: Path) -> list[Photo]:
    """The faces of the benchmarks' sets and the demo photos, each (photo, face) once."""
    detector = open_detector("yunet")
    chosen: dict[Path, Photo] = {}

    def pick(path: Path, select, demo: bool = False) -> None:  # select(found) -> indices
        image = _read(path)
        found = detector.detect(image)
        if not found:
            raise ValueError(f"{path}: YuNet finds no face")
        photo = chosen.setdefault(path.resolve(), Photo(path, set(), demo))
        photo.faces.update(select(found))
        photo.demo |= demo

    for name in ("astronaut", "grace_hopper"):
        pick(packaged_photo(name), _largest, demo=True)
    for path, person in fetch_photos(folder):  # faces64_encoder's ten people (two in the Breaking Bad still)
        pick(path, lambda found, person=person: _largest(found, 2 if person == "Breaking Bad cast" else 1))
    for path, _, centre in fetch_more_people(folder):
        if centre is None:
            pick(path, lambda found: [i for i, f in enumerate(found) if min(f.box[2], f.box[3]) >= MIN_SIDE])
        else:
            pick(path, lambda found, centre=centre: [_nearest(found, centre)])
    bald = archive_member(folder, REQUIREMENT, f"{DLIB_EXAMPLES}/faces/bald_guys.jpg")
    pick(bald, lambda found: [_nearest(found, c) for centres in BALD_GUYS.values() for c in centres])
    with tarfile.open(sorted(folder.glob("dlib-19.5.0.tar.gz"))[-1]) as tar:
        johns = sorted(m.name for m in tar.getmembers() if m.name.startswith(f"{DLIB_EXAMPLES}/johns/")
                       and m.name.endswith(".jpg") and m.name.split("/")[-2] in JOHNS)
    for member in johns:
        pick(archive_member(folder, REQUIREMENT, member), _largest)
    return list(chosen.values())


class HogJudge:
    """dlib's HOG frontal face detector, asked whether a face is where a face was."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()

    def finds(self, image: np.ndarray, box: np.ndarray) -> bool:
        x, y, w, h = (float(v) for v in box)
        side = max(w, h)
        scale = HOG_FACE_PX / side
        cx, cy = x + w / 2, y + h / 2
        # The window: twice the face, scaled so the face is HOG_FACE_PX; outside the photo is grey.
        matrix = np.array([[scale, 0, side * scale - cx * scale], [0, scale, side * scale - cy * scale]])
        out = int(round(2 * side * scale))
        window = cv2.warpAffine(image, matrix, (out, out), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
        rects = self.detector(np.ascontiguousarray(window[..., ::-1]), 0)
        for r in rects:
            rx, ry = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
            inside = abs(rx - out / 2) <= w * scale / 2 and abs(ry - out / 2) <= h * scale / 2
            if inside and 0.5 <= r.width() / (side * scale) <= 2.0:
                return True
        return False


def seam(original: np.ndarray, protected: np.ndarray, alpha: np.ndarray, interocular: float) -> float:
    """The colour step added at the 0.5 contour of ``alpha`` ``(H, W)`` (mean CIE76 Lab, >= 0)."""
    inside = (alpha >= 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return float("nan")
    points = np.concatenate([c.reshape(-1, 2) for c in contours])[::2].astype(np.float64)
    smooth = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(1.0, 0.1 * interocular))
    gy, gx = np.gradient(smooth)
    px, py = points[:, 0].astype(int), points[:, 1].astype(int)
    normal = np.stack([gx[py, px], gy[py, px]], 1)  # points inwards
    norm = np.linalg.norm(normal, axis=1)
    keep = norm > 1e-6
    points, normal = points[keep], normal[keep] / norm[keep, None]
    radius = max(1, int(round(SEAM_RADIUS * interocular)))
    offset = SEAM_OFFSET * interocular
    height, width = alpha.shape

    def sample(lab: np.ndarray, at: np.ndarray) -> np.ndarray:
        xs = np.clip(np.rint(at[:, 0]).astype(int), 0, width - 1)
        ys = np.clip(np.rint(at[:, 1]).astype(int), 0, height - 1)
        return lab[ys, xs]

    steps = []
    for image in (protected, original):
        lab = cv2.blur(cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab), (2 * radius + 1,) * 2)
        steps.append(np.linalg.norm(sample(lab, points + offset * normal) - sample(lab, points - offset * normal),
                                    axis=1))
    return float(np.maximum(steps[0] - steps[1], 0.0).mean())


def tone(original: np.ndarray, protected: np.ndarray, landmarks: np.ndarray) -> float:
    """CIE76 between the mean skin colour (``blend.skin``) of the inner face on ``protected`` and on ``original``."""
    inner = polygon_mask(inner_hull(landmarks), original.shape).astype(bool)
    means = [blend.skin(blend.lab(image[inner])).mean(0) for image in (original, protected)]
    return float(np.linalg.norm(means[0] - means[1]))


def _full_alpha(region, shape: tuple[int, ...]) -> np.ndarray:
    alpha = np.zeros(shape[:2], np.float32)
    alpha[region.y0:region.y1, region.x0:region.x1] = region.alpha
    return alpha


def _face_strip(image: np.ndarray, face: Face, side: int = 96) -> np.ndarray:
    x, y, w, h = (float(v) for v in face.box)
    s = 1.4 * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    matrix = np.array([[side / s, 0, side / 2 - cx * side / s], [0, side / s, side / 2 - cy * side / s]])
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)


def evaluate(photos: list[Photo], face_protector: FaceProtector, fr: DlibRecognizer, hog: HogJudge,
             originals: dict[tuple[int, int], tuple[np.ndarray, bool]], sf=None,
             sface_originals: dict[tuple[int, int], np.ndarray] | None = None) -> tuple[list[dict], list[np.ndarray]]:
    """Per selected face: HOG on the protected photo, dlib distance to the original, seam, paste ms."""
    rows, strips = [], []
    for p, photo in enumerate(photos):
        image = _read(photo.path)
        result = face_protector.process(image)
        per_face_ms = result.timings_ms["paste"] / max(1, result.protected)
        for i in sorted(photo.faces):
            face = result.faces[i]
            region = result.pasted.get(i)
            embedding, _ = originals[(p, i)]
            protected = fr.embed(fr.align(result.frame, face.landmarks)[None])[0]
            interocular = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
            rows.append({"photo": photo.path.name, "face": i, "demo": photo.demo, "masked": region is None,
                         "hog": hog.finds(result.frame, face.box),
                         "distance": float(np.linalg.norm(protected - embedding)),
                         "seam": seam(image, result.frame, _full_alpha(region, image.shape), interocular)
                         if region is not None else float("nan"),
                         "tone": tone(image, result.frame, face.landmarks) if region is not None else float("nan"),
                         "paste_ms": per_face_ms, "redrawn": any(line.startswith(f"face {i + 1} of ")
                                                                 for line in result.notes),
                         "guard_rejected": any(line.startswith(f"face {i + 1} of ") and "artefact guard" in line
                                               for line in result.notes),
                         "identity_redrawn": any(line.startswith(f"face {i + 1} of ") and "too close" in line
                                                 for line in result.notes)})
            if sf is not None and sface_originals is not None:
                rows[-1]["sface"] = float(sf.score(sf.embed(sf.align(result.frame, face.landmarks)[None]),
                                                   sface_originals[(p, i)][None])[0])
            if not photo.demo:
                strips.append(_face_strip(result.frame, face))
    return rows, strips


def _letterboxed(name: str) -> np.ndarray:
    """A packaged photo scaled into a 640x480 gray frame."""
    image = _read(packaged_photo(name))
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 128, np.uint8)
    frame[:small.shape[0], :small.shape[1]] = small
    return frame


def _stats(values: list[float], prefix: str) -> dict[str, float]:
    ordered = sorted(values)
    return {f"{prefix}_min": ordered[0], f"{prefix}_median": statistics.median(ordered),
            f"{prefix}_p99": ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]}


def timing_640x480(face_protector: FaceProtector, repeat: int) -> dict[str, float]:
    """Paste phase per face on the demo photos letterboxed to 640x480 (photos: no track, so the guard and
    the identity check run every time): ms of paste-back alone (region, colour, clone, blend), of the
    artefact guard (YuNet, and the draws it turns down: networks and pastes), of the identity check, and
    of the face's outline (``region.face_outline``: dlib's predictor; found with the alignment since
    session 8, measured here face by face as a photo needs it)."""
    per_face: dict[str, list[float]] = {"paste": [], "guard": [], "paste_and_guard": [], "identity": [],
                                        "outline": [], "outline_paste_and_guard": []}
    redrawn = 0
    for name in ("astronaut", "grace_hopper"):
        frame = _letterboxed(name)
        work = face_protector.protect_crops(face_protector.prepare(frame))
        protected, drawn = dict(work.protected), dict(work.drawn)
        base = work.result
        for _ in range(repeat):  # a fresh result each time: paste counts into it
            work.result = FrameResult(frame.copy(), faces=list(base.faces), timings_ms=dict(base.timings_ms))
            work.protected, work.drawn, work.failed = dict(protected), dict(drawn), {}
            started = time.perf_counter()
            for face in base.faces if face_protector.paste_style.region == "outline" else ():
                face_protector.outlines.outline(frame, face, face_protector.paste_style.dlib)
            outline_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(base.faces))
            result = face_protector.paste(work)
            faces = max(1, result.protected)
            stage = {k: result.timings_ms.get(k, 0.0) / faces for k in ("paste", "guard", "identity")}
            for k, v in stage.items():
                per_face[k].append(v)
            per_face["paste_and_guard"].append(stage["paste"] + stage["guard"])
            per_face["outline"].append(outline_ms)
            per_face["outline_paste_and_guard"].append(outline_ms + stage["paste"] + stage["guard"])
        redrawn += result.redrawn
    out: dict[str, float] = {"runs": len(per_face["paste"]), "timed_faces_redrawn": redrawn}
    for k, values in per_face.items():
        out.update(_stats(values, f"{k}_ms"))
    out["median_ms_per_face"], out["min_ms_per_face"] = out["paste_and_guard_ms_median"], out["paste_and_guard_ms_min"]
    return out


def timing_video(face_protector: FaceProtector, frames: int) -> dict[str, float]:
    """Per frame of a 640x480 video (the astronaut letterboxed, moving 2 px a frame, one track): ms of
    paste-back, guard, identity check and outline, and how many frames ran the identity check."""
    from anonymixer.face.track import LandmarkSmoother

    base, smoother = _letterboxed("astronaut"), LandmarkSmoother()
    per_frame: dict[str, list[float]] = {"paste": [], "guard": [], "identity": [], "outline": []}
    checked = 0
    for n in range(frames):
        frame = np.roll(base, 2 * (n % 40), axis=1)
        result = face_protector.process(frame, smoother, n / 30.0)
        for k in per_frame:
            per_frame[k].append(result.timings_ms.get(k, 0.0))
        checked += int(result.timings_ms.get("identity", 0.0) > 0)
    out: dict[str, float] = {"frames": frames, "frames_identity_checked": checked}
    for k, values in per_frame.items():
        out.update(_stats(values, f"video_{k}_ms"))
        out[f"video_{k}_ms_mean"] = float(np.mean(values))
    return out


def before_after(path: Path, keys: tuple[int, ...] = (0, 1)) -> None:
    """The demo photos' faces: original | legacy | default (with the identity check), a row per photo and key."""
    from anonymixer.face.demo import _label

    images = [_read(packaged_photo(name)) for name in ("astronaut", "grace_hopper")]
    detector, rows = open_detector("yunet"), []
    for k in keys:
        with Protector("faces64", eval_key(0, f"pasteback-{k}", "*")) as protector:
            for image in images:
                face, tiles = detector.detect(image)[0], []
                for style, caption in ((None, "original"), ("legacy", f"before (key {k})"), ("default", f"after (key {k})")):
                    out = image if style is None else FaceProtector(protector, detector, paste_style=style,
                                                                    identity_check=style != "legacy").process(image).frame
                    tile = _face_strip(out, face, 300)
                    _label(tile, caption)
                    tiles.append(tile)
                rows.append(np.hstack(tiles))
    write_image(path, np.vstack(rows))


def summarise(rows: list[dict], hog_originals: float) -> dict[str, object]:
    distances = np.array([r["distance"] for r in rows])
    seams = np.array([r["seam"] for r in rows if not np.isnan(r["seam"])])
    tones = np.array([r["tone"] for r in rows if not np.isnan(r.get("tone", float("nan")))])
    return {"faces": len(rows), "hog_share": float(np.mean([r["hog"] for r in rows])),
            "hog_share_originals": hog_originals,
            "distance_min": float(distances.min()), "distance_mean": float(distances.mean()),
            "share_under_0.6": float((distances < DLIB_MATCH).mean()),
            "seam_mean": float(seams.mean()) if seams.size else float("nan"),
            **({"tone_mean": float(tones.mean()), "tone_p90": float(np.percentile(tones, 90))} if tones.size else {}),
            "masked": int(sum(r["masked"] for r in rows)), "redrawn": int(sum(r["redrawn"] for r in rows)),
            "guard_rejected_first": int(sum(r.get("guard_rejected", False) for r in rows)),
            "identity_redrawn": int(sum(r.get("identity_redrawn", False) for r in rows)),
            **({"sface_max": float(max(r["sface"] for r in rows))} if rows and "sface" in rows[0] else {}),
            "paste_ms_median": float(np.median([r["paste_ms"] for r in rows]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="faces64")
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--out", default="out/pasteback_realism")
    parser.add_argument("--styles", default="legacy,default", help=f"comma-separated, of {', '.join(PASTE_STYLES)}")
    parser.add_argument("--keys", type=int, default=3, help="evaluation keys eval_key(0, 'pasteback-K', '*')")
    parser.add_argument("--repeat", type=int, default=20, help="paste phases per photo for the 640x480 timing")
    parser.add_argument("--table", action="store_true", help="only print the table of the results in --out")
    parser.add_argument("--identity", default="auto", choices=("auto", "dlib", "sface", "off"),
                        help="FaceProtector's identity check (face.identity): auto (the default: dlib, else SFace), "
                             "a recogniser, or off")
    parser.add_argument("--video-frames", type=int, default=90, help="frames of the 640x480 video timing")
    parser.add_argument("--timing-only", action="store_true",
                        help="only the 640x480 paste timing per key (printed; no photo sets, nothing written)")
    parser.add_argument("--before-after", default=None, metavar="IMAGE",
                        help="only write the demo photos' faces before | after under keys 0 and 1 to IMAGE")
    parser.add_argument("--every", type=int, default=1, help="only every N-th photo (quick looks; 1: all)")
    parser.add_argument("--first-key", type=int, default=0, help="keys pasteback-K from this K on")
    args = parser.parse_args(argv)
    if args.table:
        print_table(Path(args.out))
        return 0
    cv2.setNumThreads(1)
    if args.before_after:
        before_after(Path(args.before_after))
        return 0
    identity = False if args.identity == "off" else True if args.identity == "auto" else args.identity
    if args.timing_only:
        for style in args.styles.split(","):
            for k in range(args.first_key, args.first_key + args.keys):
                with Protector(args.model, eval_key(0, f"pasteback-{k}", "*")) as protector:
                    face_protector = FaceProtector(protector, open_detector("yunet"), paste_style=style,
                                                   identity_check=identity)
                    timing = {**timing_640x480(face_protector, args.repeat),
                              **timing_video(face_protector, args.video_frames)}
                print(style, f"key{k}", json.dumps(timing), Path("/proc/loadavg").read_text().split()[:3], flush=True)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = collect_photos(Path(args.photos))[::args.every]
    fr, hog, sf = DlibRecognizer(), HogJudge(), sface()
    originals: dict[tuple[int, int], tuple[np.ndarray, bool]] = {}
    sface_originals: dict[tuple[int, int], np.ndarray] = {}
    detector = open_detector("yunet")
    for p, photo in enumerate(photos):
        image = _read(photo.path)
        found = detector.detect(image)
        for i in photo.faces:
            originals[(p, i)] = (fr.embed(fr.align(image, found[i].landmarks)[None])[0], hog.finds(image, found[i].box))
            sface_originals[(p, i)] = sf.embed(sf.align(image, found[i].landmarks)[None])[0]
    hog_originals = float(np.mean([found for _, found in originals.values()]))
    report: dict[str, object] = {"model": args.model, "faces": len(originals), "photos": len(photos),
                                 "hog_share_originals": hog_originals, "styles": {}}
    print(f"{len(originals)} faces in {len(photos)} photos; dlib HOG finds {hog_originals:.1%} of the originals",
          flush=True)
    for style in args.styles.split(","):
        per_key = {}
        for k in range(args.first_key, args.first_key + args.keys):
            with Protector(args.model, eval_key(0, f"pasteback-{k}", "*")) as protector:
                face_protector = FaceProtector(protector, open_detector("yunet"), paste_style=style,
                                               identity_check=identity)
                started = time.perf_counter()
                rows, strips = evaluate(photos, face_protector, fr, hog, originals, sf, sface_originals)
                summary = summarise(rows, hog_originals)
                summary["seconds"] = time.perf_counter() - started
                summary.update(timing_640x480(face_protector, args.repeat))
                summary.update(timing_video(face_protector, args.video_frames))
                summary["identity_check"] = face_protector.identity_status
                summary["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
                per_key[f"key{k}"] = {"summary": summary, "faces": rows}
                write_image(out / f"faces_{style}_key{k}.png",
                            np.vstack([np.hstack(strips[j:j + 20] + [np.zeros_like(strips[0])] * (20 - len(strips[j:j + 20])))
                                       for j in range(0, len(strips), 20)]))
                print(style, f"key{k}", json.dumps({k2: round(v, 4) if isinstance(v, float) else v
                                                    for k2, v in summary.items()}), flush=True)
        label = f"{style}+{'no-check' if args.identity == 'off' else args.identity + '-check'}"
        write_json(out / f"pasteback_realism_{label}.json", {**report, "style": label, "keys": per_key}, indent=1)
    print_table(out)
    return 0


def print_table(out: Path) -> None:
    """The markdown table of every ``pasteback_realism_<style>.json`` in ``out``."""
    print("| style | key | faces | HOG finds a face | distance to original: min / mean | share < 0.6 | seam (dE) | skin tone off (dE), mean / p90 | "
          "first draw turned down by the guard | re-drawn by the identity check | masked | "
          "640x480 ms/face, min / median / p99: paste | guard | identity |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(out.glob("pasteback_realism_*.json")):
        report = json.loads(path.read_text())
        for key, entry in report["keys"].items():
            s = entry["summary"]

            def ms(stage: str) -> str:
                if f"{stage}_ms_min" not in s:
                    return ""
                return f"{s[f'{stage}_ms_min']:.1f} / {s[f'{stage}_ms_median']:.1f} / {s[f'{stage}_ms_p99']:.1f}"

            timing = (" | ".join(ms(stage) for stage in ("paste", "guard", "identity")) if "paste_ms_min" in s else
                      f"{s.get('min_ms_per_face', float('nan')):.2f} / {s.get('median_ms_per_face', float('nan')):.2f} | | ")
            tone_cell = f"{s['tone_mean']:.1f} / {s['tone_p90']:.1f}" if "tone_mean" in s else ""
            print(f"| {report['style']} | {key} | {s['faces']} | {s['hog_share']:.1%} | {s['distance_min']:.3f} / "
                  f"{s['distance_mean']:.3f} | {s['share_under_0.6']:.1%} | {s['seam_mean']:.2f} | "
                  f"{tone_cell} | {s.get('guard_rejected_first', '')} | {s.get('identity_redrawn', '')} | {s['masked']} | {timing} |")


if __name__ == "__main__":
    sys.exit(main())
