"""Can a measure we have choose, among a face's draws, one that a person takes for a face? (session 9)

Every one of the key's eight faces64 draws of a face is pasted (the default paste, no identity check)
and measured: the artefact guard's measures (YuNet on the generated face, its landmarks, cheeks, head
turn; the pasted split), YuNet's score on the pasted face in its photo (a 160-px close-up, 1.4 face
boxes wide) and the faces64 encoder's round trip (the pasted face aligned and encoded again, against
the code it was drawn from). Two sets, each 40 faces: README's demo photos under 12 evaluation keys
(``eval_key(0, "pasteback-K", "*")``) and 16 faces of ``benchmarks/pasteback_realism.py``'s photos,
one key each:

    python benchmarks/experiments/pasteback_draw_choice/draws.py build a out/draws_a.npz   # keys 100-111, 200-215
    python benchmarks/experiments/pasteback_draw_choice/draws.py build b out/draws_b.npz   # keys 120-131, 300-315
    python benchmarks/experiments/pasteback_draw_choice/draws.py sheets out/draws_a.npz out/draws_b.npz out/sheets
    python benchmarks/experiments/pasteback_draw_choice/draws.py judge out/draws_a.npz out/draws_b.npz

Session 10 (faces64's steered draws): the same sets built with session 8-9's draws 4-7 (``--steer
turn-only``: the head turn kept only) and as now, the guard's pick of each face from both shuffled into
blind sheets, and the ratings (``ratings_steer.json``) scored:

    python benchmarks/experiments/pasteback_draw_choice/draws.py build a out/draws_a_turn.npz --steer turn-only
    python benchmarks/experiments/pasteback_draw_choice/draws.py build b out/draws_b_turn.npz --steer turn-only
    python benchmarks/experiments/pasteback_draw_choice/draws.py build a out/draws_a10.npz
    python benchmarks/experiments/pasteback_draw_choice/draws.py build b out/draws_b10.npz
    python benchmarks/experiments/pasteback_draw_choice/draws.py versus out/draws_a_turn.npz out/draws_b_turn.npz out/draws_a10.npz out/draws_b10.npz out/versus
    python benchmarks/experiments/pasteback_draw_choice/draws.py versus-judge out/draws_a_turn.npz out/draws_b_turn.npz out/draws_a10.npz out/draws_b10.npz

Then the mouth set too (``faces64_look.json``'s fourth direction), against the steered draws without it
(``out/draws_a10.npz`` and ``out/draws_b10.npz`` built before the mouth was added; ``ratings_mouth.json``):

    python benchmarks/experiments/pasteback_draw_choice/draws.py build a out/draws_a10m.npz
    python benchmarks/experiments/pasteback_draw_choice/draws.py build b out/draws_b10m.npz
    python benchmarks/experiments/pasteback_draw_choice/draws.py versus out/draws_a10.npz out/draws_b10.npz out/draws_a10m.npz out/draws_b10m.npz out/versus_mouth --seed 77
    python benchmarks/experiments/pasteback_draw_choice/draws.py versus-judge out/draws_a10.npz out/draws_b10.npz out/draws_a10m.npz out/draws_b10m.npz --seed 77 --ratings benchmarks/experiments/pasteback_draw_choice/ratings_mouth.json --labels "steered,steered with the mouth set"

(To build the sets without the mouth now, drop ``mouth`` from ``faces64_look.json``'s targets.)

``sheets`` writes the sheets as they were rated: set A, each row's eight pasted draws in a shuffled
order beside the original; set B, the draws that three choice rules pick (the guard's first passing
draw, as ``face.draws`` does; the passing draw YuNet scores highest once pasted; the draw YuNet scores
highest once pasted, passing or not), shuffled into one numbered sheet. ``ratings.json`` holds one
person's blind ratings of those sheets. ``judge`` prints how well each measure separates broken from
unbroken draws (ROC AUC on set A; with session 8's vertical-edge lead) and, for each rule, the broken faces
it picks (A: all rated; B: the blind test of rules fitted on nothing from B; tighter guard limits, fitted on
A, with the B picks that were not rated counted apart). Photos: ``--photos`` (default out/photos), as
``pasteback_realism.py`` fetches them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from anonymixer.atomic import replacing_file, write_json
from anonymixer.face.io import write_image

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

SETS = {"a": (100, 9, 200), "b": (120, 11, 300)}   # demo keys from, benchmark faces' seed, their keys from
TILE = 160                                         # close-ups: this many pixels, 1.4 face boxes wide
ORDER = [4, 5, 6, 7, 0, 1, 2, 3]                   # faces64's draws as ``DrawChooser.order`` tries them
RATINGS = Path(__file__).with_name("ratings.json")


def build(which: str, out: Path, photos: Path, steer: str = "now") -> None:
    from pasteback_realism import _read, collect_photos

    if steer == "turn-only":   # session 8-9's draws 4-7: only the person's head turn kept
        from anonymixer.face import guard

        only = guard.steer_of([guard.faces64_yaw()], [True], [0.0])
        guard.faces64_steer = lambda: only

    from anonymixer.eval.protocols import eval_key
    from anonymixer.face.align import resize_affine, warp_crop
    from anonymixer.face.detect import find_yunet_model, open_detector
    from anonymixer.face.guard import head_turn
    from anonymixer.face.paste import PasteStyle, paste_generated
    from anonymixer.face.photos import packaged_photo
    from anonymixer.face.pipeline import FaceProtector
    from anonymixer.runtime import Protector

    demo_from, seed, bench_from = SETS[which]
    rows = [(str(packaged_photo(name)), 0, k) for k in range(demo_from, demo_from + 12)
            for name in ("astronaut", "grace_hopper")]
    faces = [(str(p.path), i) for p in collect_photos(photos) if not p.demo for i in sorted(p.faces)]
    rng = np.random.default_rng(seed)
    rows += [(*faces[j], bench_from + n) for n, j in enumerate(rng.choice(len(faces), 16, replace=False))]
    detector = open_detector("yunet")
    yunet = cv2.FaceDetectorYN.create(str(find_yunet_model()), "", (TILE, TILE), 0.05, 0.3, 10)
    data: dict[str, list] = {k: [] for k in ("tile", "score", "lm", "half", "turn", "split", "paste_score",
                                             "round_trip")}
    originals = []
    for r, (path, index, key) in enumerate(rows):
        image = _read(Path(path))
        with Protector("faces64", eval_key(0, f"pasteback-{key}", "*")) as protector:
            face_protector = FaceProtector(protector, detector, identity_check=False)
            work = face_protector.prepare(image)
            face = work.result.faces[index]
            x, y, w, h = (float(v) for v in face.box)
            side = 1.4 * max(w, h)
            to_tile = np.float32([[TILE / side, 0, TILE / 2 - (x + w / 2) * TILE / side],
                                  [0, TILE / side, TILE / 2 - (y + h / 2) * TILE / side]])

            def tile(frame: np.ndarray) -> np.ndarray:
                return cv2.warpAffine(frame, to_tile, (TILE, TILE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)

            originals.append(tile(image))
            crop, matrix = work.crops[index]
            code = protector.encode(crop[None])
            mixer = protector.backend.stage("mixer")
            for d in ORDER:
                feeds = face_protector.draws.feeds(d)
                generated = protector.render(code, feeds)[0]
                verdict = face_protector.guard.check(generated, head_turn(face.landmarks))
                frame = image.copy()
                region = paste_generated(frame, image, cv2.cvtColor(generated, cv2.COLOR_RGB2BGR),
                                         resize_affine(matrix, protector.input_size, generated.shape[0]),
                                         face.landmarks, work.outlines.get(index), protector.info.crop_template,
                                         PasteStyle())
                close_up = tile(frame)
                _, found = yunet.detect(close_up)
                again = protector.encode(cv2.cvtColor(warp_crop(frame, matrix, protector.input_size),
                                                      cv2.COLOR_BGR2RGB)[None])
                drawn = mixer.run({"w_real": code, **(feeds or protector.key_feeds)})["w_prot"]
                data["tile"].append(close_up)
                data["score"].append(verdict.score)
                data["lm"].append(verdict.landmark_error)
                data["half"].append(verdict.half_difference)
                data["turn"].append(verdict.turn)
                data["split"].append(region.split)
                data["paste_score"].append(0.0 if found is None else float(found[:, 14].max()))
                data["round_trip"].append(float(np.linalg.norm(again - drawn)))
        print(f"{which} {r + 1}/{len(rows)} {Path(path).name} key {key}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing_file(out) as f:
        np.savez_compressed(f, originals=np.array(originals), rows=np.array([f"{p}|{i}|{k}" for p, i, k in rows]),
                            **{k: np.asarray(v).reshape(len(rows), 8, *np.asarray(v).shape[1:]) for k, v in data.items()})


def measures(data: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    return {k: data[k] for k in ("score", "lm", "half", "turn", "split", "paste_score", "round_trip")}


# Tighter limits (score, landmarks, cheeks, turn, split), the best of a grid on set A: tried, not kept.
TIGHTER = (0.75, 0.07, 18.0, 0.06, 10.0)


def shortfall(m: dict[str, np.ndarray], limits: tuple[float, ...] | None = None) -> np.ndarray:
    """``guard.Verdict.shortfall`` of every (row, draw), with the guard's limits (or ``limits``)."""
    from anonymixer.face import guard

    score, lm, half, turn, split = limits or (guard.MIN_SCORE, guard.MAX_LANDMARK_ERROR, guard.MAX_HALF_DIFFERENCE,
                                              guard.MAX_TURN, guard.MAX_SPLIT)
    return (np.maximum(0, score - m["score"]) / score + np.minimum(np.maximum(0, m["lm"] - lm) / lm, 10)
            + np.maximum(0, m["half"] - half) / half + np.minimum(np.maximum(0, m["turn"] - turn) / turn, 10)
            + np.maximum(0, m["split"] - split) / split)


def first_passing(short: np.ndarray) -> np.ndarray:
    """``face.draws``' choice: the first draw that passes, else the nearest."""
    passed = short == 0
    return np.where(passed.any(1), passed.argmax(1), short.argmin(1))


def rules(m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Column (position in ``ORDER``) each rule picks, per row."""
    short = shortfall(m)
    passed = short == 0
    first = first_passing(short)
    masked = np.where(passed, m["paste_score"], -1.0)
    best_passing = np.where(passed.any(1), masked.argmax(1), first)
    return {"guard's first passing (now)": first, "passing, best YuNet pasted": best_passing,
            "best YuNet pasted": m["paste_score"].argmax(1)}


def vertical_edge(tile: np.ndarray) -> float:
    """Session 8's lead: the strongest vertical lightness step across the middle of the face (rows 35-80 %,
    columns 20-80 % of the close-up), averaged down the rows, over the mean step."""
    import cv2

    lightness = cv2.cvtColor(cv2.GaussianBlur(tile, (0, 0), 1.5), cv2.COLOR_BGR2Lab)[..., 0].astype(np.float32)
    side = tile.shape[0]
    band = lightness[int(0.35 * side):int(0.8 * side), int(0.2 * side):int(0.8 * side)]
    step = band[:, 8:] - band[:, :-8]
    return float(np.abs(step.mean(0)).max() / (np.abs(step).mean() + 1e-3))


def sheets(a: Path, b: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = np.load(a)
    rng = np.random.default_rng(5)
    perm = np.array([rng.permutation(8) for _ in range(len(data["rows"]))])
    for s in range(0, len(perm), 8):
        lines = []
        for r in range(s, min(len(perm), s + 8)):
            cells = [data["originals"][r].copy()]
            cv2.putText(cells[0], f"row {r}", (3, 14), 0, 0.45, (0, 255, 255), 1)
            for c in range(8):
                cells.append(data["tile"][r, perm[r, c]].copy())
                cv2.putText(cells[-1], str(c), (3, 14), 0, 0.5, (0, 255, 0), 1)
            lines.append(np.hstack(cells))
        write_image(out / f"a_sheet{s // 8}.png", np.vstack(lines))
    with replacing_file(out / "a_columns.npy") as f:   # shown column c of row r = position perm[r, c] in ORDER
        np.save(f, perm)
    data = np.load(b)
    chosen = rules(measures(data))
    items = sorted({(r, int(c[r])) for c in chosen.values() for r in range(len(data["rows"]))})
    np.random.default_rng(77).shuffle(items)
    cells = []
    for n, (r, c) in enumerate(items):
        cells.append(data["tile"][r, c].copy())
        cv2.putText(cells[-1], str(n), (3, 14), 0, 0.5, (0, 255, 0), 1)
    cells += [np.zeros_like(cells[0])] * (-len(cells) % 8)
    for s in range(0, len(cells), 48):
        write_image(out / f"b_sheet{s // 48}.png",
                    np.vstack([np.hstack(cells[k:k + 8]) for k in range(s, min(len(cells), s + 48), 8)]))
    write_json(out / "b_items.json", [[r, ORDER[c]] for r, c in items])   # sheet number -> (row, draw)
    print(f"wrote {out}: set A {len(perm)} rows; set B {len(items)} faces")


def auc(scores: np.ndarray, broken: np.ndarray) -> float:
    """ROC AUC: the chance that a broken draw scores higher than an unbroken one (ties: half)."""
    pos, neg = scores[broken], scores[~broken]
    return float(np.mean([(p > neg).mean() + 0.5 * (p == neg).mean() for p in pos]))


def judge(a: Path, b: Path) -> None:
    ratings = json.loads(RATINGS.read_text())
    data = np.load(a)
    m = measures(data)
    n = len(data["rows"])
    broken = np.zeros((n, 8), bool)
    for r, draws in ratings["a"]["broken_draws_by_row"].items():
        for d in draws:
            broken[int(r), ORDER.index(d)] = True
    passed = shortfall(m) == 0
    print(f"set A: {n} faces x 8 draws, {broken.sum()} broken ({broken.mean():.0%}); the guard passes {passed.mean():.0%} "
          f"of draws: broken {broken[passed].mean():.0%} of those it passes, {broken[~passed].mean():.0%} of those it turns down")
    print("| measure (higher = more broken) | AUC, all draws | AUC, draws the guard passes |\n|---|---|---|")
    m = {**m, "vertical_edge": np.array([[vertical_edge(t) for t in row] for row in data["tile"]])}
    for name, sign in (("score", -1), ("lm", 1), ("half", 1), ("turn", 1), ("split", 1), ("paste_score", -1),
                       ("round_trip", 1), ("vertical_edge", 1)):
        v = sign * m[name]
        print(f"| {name}{' (negated)' if sign < 0 else ''} | {auc(v, broken):.2f} | {auc(v[passed], broken[passed]):.2f} |")
    rated_b: dict[tuple[int, int], bool] = {(r, d): bool(x) for r, d, x in ratings["b"]["rated"]}
    data_b = np.load(b)
    print("\n| rule | set A: broken faces of 40 | set B (blind): broken faces of 40 | B: better / worse than now |\n|---|---|---|---|")
    now_b = None
    for name, column in rules(m).items():
        picks_b = rules(measures(data_b))[name]
        a_broken = int(broken[np.arange(n), column].sum())
        b = np.array([rated_b[(r, ORDER[c])] for r, c in enumerate(picks_b)])
        if now_b is None:
            now_b = b
        print(f"| {name} | {a_broken} | {int(b.sum())} | {int((now_b & ~b).sum())} / {int((~now_b & b).sum())} |")
    tight_a = first_passing(shortfall(m, TIGHTER))
    tight_b = [rated_b.get((r, ORDER[c])) for r, c in enumerate(first_passing(shortfall(measures(data_b), TIGHTER)))]
    print(f"| tighter limits {TIGHTER} (fitted on A) | {int(broken[np.arange(n), tight_a].sum())} | "
          f"{sum(x is True for x in tight_b)} (and {sum(x is None for x in tight_b)} picks not rated) | |")


VERSUS_RATINGS = Path(__file__).with_name("ratings_steer.json")
_TURN_ONLY = [ROOT / "out" / "draws_a_turn.npz", ROOT / "out" / "draws_b_turn.npz"]   # as the docstring builds them


def _versus_items(old: list[Path], new: list[Path], seed: int = 2026) -> list[tuple[str, str, int, int, np.ndarray]]:
    """(set, "old"|"new", row, position in ORDER, close-up) of every face as the guard picks its draw
    (the first that passes, as ``face.draws`` does), in the blind sheet's shuffled order."""
    items = []
    for which, paths in zip("ab", zip(old, new, strict=True), strict=True):
        for tag, path in zip(("old", "new"), paths, strict=True):
            data = np.load(path)
            pick = first_passing(shortfall(measures(data)))
            items += [(which, tag, r, int(pick[r]), data["tile"][r, pick[r]]) for r in range(len(pick))]
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def versus(old: list[Path], new: list[Path], out: Path, seed: int = 2026) -> None:
    """The blind sheets of session 10: every face of sets A and B as pasted with session 8-9's draws
    (``--steer turn-only``) and with the steered draws, each as the guard picks it, shuffled into numbered
    sheets of 48 (no mark of which code made which)."""
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for n, (*_, tile) in enumerate(_versus_items(old, new, seed)):
        cells.append(tile.copy())
        cv2.putText(cells[-1], str(n), (3, 14), 0, 0.5, (0, 255, 0), 1)
    cells += [np.zeros_like(cells[0])] * (-len(cells) % 8)
    for s in range(0, len(cells), 48):
        write_image(out / f"versus{s // 48}.png",
                    np.vstack([np.hstack(cells[k:k + 8]) for k in range(s, min(len(cells), s + 48), 8)]))
    print(f"wrote {out}: {len(cells)} faces")


def versus_judge(old: list[Path], new: list[Path], ratings: Path = VERSUS_RATINGS, seed: int = 2026,
                 labels: tuple[str, str] = ("head turn kept only", "steered")) -> None:
    """Scores ``ratings`` (the numbers rated broken on the sheets of ``versus`` with the same ``seed``)."""
    from math import comb

    broken_numbers = set(json.loads(ratings.read_text())["broken"])
    items = _versus_items(old, new, seed)
    broken = {(which, tag, row): n in broken_numbers for n, (which, tag, row, _, _) in enumerate(items)}
    total = {"old": 0, "new": 0}
    only = {"old": 0, "new": 0}
    for which in "ab":
        rows = sorted({row for (w, _, row) in broken if w == which})
        o = np.array([broken[(which, "old", r)] for r in rows])
        n = np.array([broken[(which, "new", r)] for r in rows])
        demo = [r for r in rows if r < 24]   # rows 0-23: the demo photos, astronaut and Grace Hopper by turns
        both_ok = {tag: sum(not broken[(which, tag, r)] and not broken[(which, tag, r + 1)] for r in demo[::2])
                   for tag in ("old", "new")}
        print(f"set {which.upper()}: broken {int(o.sum())} of {len(rows)} {labels[0]}, {int(n.sum())} "
              f"{labels[1]}; demo runs (of {len(demo) // 2}) with both faces unbroken {both_ok['old']} -> {both_ok['new']}")
        for tag, paths in ((labels[0], old), (labels[1], new)):
            passed = shortfall(measures(np.load(paths["ab".index(which)]))) == 0
            print(f"  the guard passes draws 4-7 ({tag}) for " + " / ".join(f"{x:.0%}" for x in passed.mean(0)[:4])
                  + " of the faces")
        total["old"] += int(o.sum())
        total["new"] += int(n.sum())
        only["old"] += int((o & ~n).sum())
        only["new"] += int((~o & n).sum())
    if ratings != VERSUS_RATINGS and labels[0] == "steered":   # the steered faces were rated before, on other sheets
        before = set(json.loads(VERSUS_RATINGS.read_text())["broken"])
        first = {(w, r): n in before for n, (w, tag, r, _, _) in enumerate(_versus_items(_TURN_ONLY, old)) if tag == "new"}
        agree = [first[(w, r)] == broken[(w, "old", r)] for (w, r) in first]
        print(f"the steered faces, rated twice (ratings_steer.json, then here): the ratings agree for {sum(agree)} of "
              f"{len(agree)}; broken {sum(first.values())} then {sum(broken[(w, 'old', r)] for (w, r) in first)}")
    if labels[0] == "head turn kept only":   # session 9 rated every draw of set A made that way
        rated = json.loads(RATINGS.read_text())["a"]["broken_draws_by_row"]
        agree = [broken[(w, "old", r)] == (ORDER[c] in rated.get(str(r), []))
                 for (w, tag, r, c, _) in items if w == "a" and tag == "old"]
        print(f"the same person's session-9 ratings of set A's old picks agree for {sum(agree)} of {len(agree)}")
    k, m = min(only.values()), sum(only.values())
    p = min(1.0, 2 * sum(comb(m, i) for i in range(k + 1)) / 2 ** m)
    print(f"together: {total['old']} -> {total['new']} broken; broken with one only: {only['old']} {labels[0]}, "
          f"{only['new']} {labels[1]} (two-sided sign test p = {p:.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build")
    p.add_argument("set", choices=sorted(SETS))
    p.add_argument("out", type=Path)
    p.add_argument("--photos", type=Path, default=ROOT / "out" / "photos")
    p.add_argument("--steer", choices=("now", "turn-only"), default="now",
                   help="faces64's draws 4-7: as the code makes them now, or session 8-9's (the head turn kept only)")
    p = sub.add_parser("versus")
    p.add_argument("old", nargs=2, type=Path, help="set A and set B built with --steer turn-only")
    p.add_argument("new", nargs=2, type=Path, help="set A and set B built now")
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=2026, help="the sheets' shuffle")
    p = sub.add_parser("versus-judge")
    p.add_argument("old", nargs=2, type=Path)
    p.add_argument("new", nargs=2, type=Path)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--ratings", type=Path, default=VERSUS_RATINGS)
    p.add_argument("--labels", default="head turn kept only,steered", help="what made the old and the new, for the print")
    p = sub.add_parser("sheets")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("judge")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        build(args.set, args.out, args.photos, args.steer)
    elif args.command == "versus":
        versus(args.old, args.new, args.out, args.seed)
    elif args.command == "versus-judge":
        versus_judge(args.old, args.new, args.ratings, args.seed, tuple(args.labels.split(",", 1)))
    elif args.command == "sheets":
        sheets(args.a, args.b, args.out)
    else:
        judge(args.a, args.b)


if __name__ == "__main__":
    main()
