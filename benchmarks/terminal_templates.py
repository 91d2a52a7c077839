"""The access terminal's templates on real people and on faces64's synthetic identities, both kinds.

    python benchmarks/terminal_templates.py [--fr sface dlib] [--identities 200] [--photos out/photos]

Real people: the 79 faces of nine people with 6-11 photos each that ``faces64_real_people.py``
uses (dlib 19.5.0's documentation examples, fetched with ``pip download``): five LFW "Johns" and
the four actors of ``bald_guys.jpg``. Synthetic: ``--identities`` faces64 identities
(``eval.synthetic.Scene``: an enrolment face and a probe face per code, the probe's code nudged
and camera-changed). For each recogniser, the ``face`` kind and the ``embedding`` kind at ranks
``--ranks`` (the default rank is the shipped one):

- ``unprotected``: the recogniser's own embeddings and score (the baseline);
- ``same_key``: templates under one key: EER; FNMR at FMR 1e-3 calibrated on this set's impostor
  pairs; FNMR and FMR at the shipped default threshold (``terminal.thresholds.MEASURED``);
- ``across_keys``: the same faces under keys A_k and B_k for ``--key-pairs`` pairs of keys, mated
  = same person: ``D_sys`` (Gomez-Barrero et al. 2018, histogram estimator of ``eval.metrics``;
  0 = unlinkable) of the scores of all pairs together (mated: one person under two different
  keys, as in that protocol), beside ``d_sys_floor``: the same estimator with each person's
  key-B templates given to the next person (a derangement of whole people: no linkage at all,
  but each person's scores still one cluster); the mean and the largest D_sys of one pair of keys
  alone, with the mean floor of one pair; the cross-key EER, and the share of mated pairs over
  the same-key threshold (a renewed template matching the old one);
- ``stolen_key`` (embedding): an attacker with the key and a template undoes the rotation, fills
  the erased directions with the population mean and matches the result against the person's real
  embeddings at the unprotected recogniser's FMR-1e-3 cosine threshold: attack success rate;
  ``template_vs_original`` (face): the template against the person's unprotected embeddings, same
  threshold;
- ``revoked`` (default rank and face): through a real store, everyone enrolled (first photo)
  under key A, A revoked, every enrolment photo verified (``revoked_templates_accepted`` must be
  0), everyone re-enrolled under key B; and how many B probes x A templates score over the
  threshold (what retiring them prevents).

``embedding`` templates are computed from the recogniser's embeddings with the same function the
terminal uses (``templates.project_embedding`` with ``keymaterial.template_projection``); the
default rank is also checked against ``TemplateMaker`` itself. Writes ``--out``/terminal_templates.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anonymixer.atomic import write_json
from anonymixer.bench.machine import load_average
from anonymixer.eval.fr import unit_rows
from anonymixer.eval.metrics import eer, linkability, threshold_at_far
from anonymixer.eval.protocols import across_pairs, eval_key, within_pairs
from anonymixer.eval.synthetic import Scene, SyntheticConfig
from anonymixer.face.detect import Face
from anonymixer.keymaterial import template_projection
from anonymixer.terminal import Terminal
from anonymixer.terminal.templates import TemplateMaker, project_embedding, template_version
from anonymixer.terminal.thresholds import measured_threshold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faces64_encoder import DLIB_EXAMPLES, archive_member  # noqa: E402
from faces64_real_people import BALD_GUYS, REQUIREMENT, johns_photos  # noqa: E402

FMR = 1e-3
KEY_A, KEY_B = eval_key(0, "A", "*"), eval_key(0, "B", "*")


def key_pairs(count: int) -> list[tuple[Any, Any]]:
    """``count`` pairs of evaluation keys ``(A_k, B_k)``; the first is ``(KEY_A, KEY_B)``."""
    return [(eval_key(k, "A", "*"), eval_key(k, "B", "*")) for k in range(count)]


def real_people(folder: Path, detector: Any) -> list[tuple[Any, Face, str]]:
    """``(image BGR, face, person)`` for the 79 faces of nine people (as ``faces64_real_people``)."""
    import cv2

    faces = []
    for path, _, person in johns_photos(folder):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        found = detector.detect(image)
        faces.append((image, max(found, key=lambda f: float(f.box[2] * f.box[3])), person.replace("_", " ")))
    image = cv2.imread(str(archive_member(folder, REQUIREMENT, f"{DLIB_EXAMPLES}/faces/bald_guys.jpg")))
    found = detector.detect(image)
    for person, centres in BALD_GUYS.items():
        for cx, cy in centres:
            face = min(found, key=lambda f: float((f.box[0] + f.box[2] / 2 - cx) ** 2 + (f.box[1] + f.box[3] / 2 - cy) ** 2))
            faces.append((image, face, person))
    return faces


def verification(mated: np.ndarray, non_mated: np.ndarray, default: float | None) -> dict[str, Any]:
    """EER, FNMR at FMR 1e-3 calibrated on these impostors, and both rates at the default threshold."""
    calibrated = threshold_at_far(non_mated, FMR)
    out: dict[str, Any] = {"eer": eer(mated, non_mated).rate, "mated_pairs": int(mated.size),
                           "non_mated_pairs": int(non_mated.size), "fmr_1e-3_threshold": calibrated,
                           "fnmr_at_fmr_1e-3": float(np.mean(mated < calibrated)),
                           "fmr_resolved": bool(non_mated.size * FMR >= 1.0)}
    if default is not None:
        out.update({"default_threshold": default, "fnmr_at_default": float(np.mean(mated < default)),
                    "fmr_at_default": float(np.mean(non_mated >= default))})
    return out


def deranged(ids: np.ndarray) -> np.ndarray:
    """Each person's label replaced by the next person's (sorted): whole people exchanged."""
    people = np.unique(ids)
    following = dict(zip(people, np.roll(people, -1)))
    return np.array([following[i] for i in ids])


def unlinkability(scores: list[np.ndarray], ids_a: np.ndarray, ids_b: np.ndarray,
                  threshold: float) -> dict[str, Any]:
    """``scores``: one ``(N, M)`` matrix per pair of keys, templates under A_k x under B_k; mated =
    same person (module docstring)."""
    split = [across_pairs(s, ids_a, ids_b) for s in scores]
    null = [across_pairs(s, ids_a, deranged(ids_b)) for s in scores]
    mated, non_mated = (np.concatenate([p[i] for p in split]) for i in (0, 1))
    floor_mated, floor_non_mated = (np.concatenate([p[i] for p in null]) for i in (0, 1))
    per_pair = [linkability(m, n).d_sys for m, n in split]
    return {"d_sys": linkability(mated, non_mated).d_sys, "d_sys_floor": linkability(floor_mated, floor_non_mated).d_sys,
            "key_pairs": len(scores), "d_sys_one_pair_mean": float(np.mean(per_pair)),
            "d_sys_one_pair_max": float(np.max(per_pair)),
            "d_sys_one_pair_floor_mean": float(np.mean([linkability(m, n).d_sys for m, n in null])),
            "cross_key_eer": eer(mated, non_mated).rate, "mated_pairs": int(mated.size),
            "renewed_pairs_matching": float(np.mean(mated >= threshold))}


def stolen_key(projection: np.ndarray, templates: np.ndarray, raw_unit: np.ndarray, people: np.ndarray,
               raw_threshold: float) -> dict[str, Any]:
    """The attacker's ``unit(s unit(t M^+) + m (I - P))`` vs the real unit embeddings (``M = P Q^T``,
    so ``t M^+`` is the direction of ``x P``; ``m``, ``s``: the population mean and the typical
    norm of ``x P``, known to anyone with public faces)."""
    projection = projection.astype(np.float64)
    pinv = np.linalg.pinv(projection, rcond=1e-4)
    kept = projection @ pinv                                              # P (row vectors: x @ P)
    mean = raw_unit.mean(0)
    scale = float(np.mean(np.linalg.norm(raw_unit @ kept, axis=1)))
    guess = unit_rows(unit_rows(templates @ pinv) * scale + mean @ (np.eye(len(mean)) - kept))
    mated, _ = across_pairs(guess @ raw_unit.T, people, people)
    return {"attack_success_rate": float(np.mean(mated >= raw_threshold)), "pairs": int(mated.size)}


def face_photo(image: np.ndarray, face: Face, margin: float = 0.3) -> np.ndarray:
    """The face's box widened by ``margin`` of its size on each side: one person of a group photo."""
    x, y, w, h = (float(v) for v in face.box)
    x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
    return np.ascontiguousarray(image[y0:int(y + h + margin * h), x0:int(x + w + margin * w)])


def revoked(images: list[np.ndarray], faces: list[Face], people: np.ndarray, t_b: np.ndarray, fr: str,
            kind: str) -> dict[str, Any]:
    """Through a real store under keys A then B (module docstring); ``t_b``: every face's B template.
    Each person is enrolled from their first photo cut to their face (``face_photo``)."""
    first = {p: face_photo(images[i], faces[i]) for i, p in reversed(list(enumerate(people)))}
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "site.db"
        with Terminal.open(db, KEY_A, kind=kind, fr=fr) as terminal:
            for person, photo in first.items():
                terminal.enrol(person, [photo])
            retired = terminal.revoke(KEY_A.fingerprint)
            accepted = sum(terminal.verify(p, photo).accepted for p, photo in first.items())
            threshold = terminal.threshold()
            rows = terminal.store.connection().execute(
                "SELECT vector FROM templates WHERE key_fingerprint = ?", (KEY_A.fingerprint,)).fetchall()
        old = np.stack([np.frombuffer(r[0], "<f4") for r in rows]).astype(np.float64)
        with Terminal.open(db, KEY_B, kind=kind, fr=fr) as terminal:
            for person, photo in first.items():
                terminal.enrol(person, [photo])
            reenrolled = len(terminal.subjects())
    return {"retired": retired, "verifications_after_revoke": len(first), "revoked_templates_accepted": accepted,
            "reenrolled_under_new_key": reenrolled, "threshold": threshold,
            "new_key_probes_over_threshold_on_retired": int(np.sum(t_b @ old.T >= threshold)),
            "comparisons": int(len(t_b) * len(old))}


def real_figures(fr: str, ranks: list[int], photos: Path, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    face_a = TemplateMaker(KEY_A, kind="face", fr=fr)
    data = real_people(photos, face_a.detector)
    images, faces = [d[0] for d in data], [d[1] for d in data]
    people = np.array([d[2] for d in data])
    raw = np.concatenate([face_a.fr.embed(face_a.fr.align(im, f.landmarks)[None]) for im, f in zip(images, faces)])
    raw_unit = unit_rows(raw.astype(np.float64))
    raw_threshold = threshold_at_far(within_pairs(raw_unit @ raw_unit.T, people)[1], FMR)
    out: dict[str, Any] = {"faces": len(people), "people": int(len(set(people))),
                           "unprotected": verification(*within_pairs(face_a.fr.score_matrix(raw, raw), people),
                                                       face_a.fr.threshold),
                           "unprotected_cosine_threshold_fmr_1e-3": raw_threshold}
    check = TemplateMaker(KEY_A, kind="embedding", fr=fr)
    assert check.projection is not None and check.rank is not None
    direct = np.stack([check.template(im, f).vector for im, f in zip(images[:3], faces[:3])])
    assert np.allclose(direct, project_embedding(raw[:3], check.projection), atol=1e-5)
    for rank in ranks:
        def templates(key: Any, rank: int = rank) -> np.ndarray:
            return project_embedding(raw, template_projection(key, None, raw.shape[1], rank).astype(np.float32))
        t_a, t_b = templates(KEY_A).astype(np.float64), templates(KEY_B).astype(np.float64)
        label = f"embedding rank {rank}" + (" (default)" if rank == check.rank else "")
        out[label] = kind_figures(t_a, [templates(a) @ templates(b).T for a, b in pairs], people,
                                  shipped_threshold("embedding", fr, rank))
        projection = template_projection(KEY_A, None, raw.shape[1], rank).astype(np.float32)
        out[label]["stolen_key"] = stolen_key(projection, t_a, raw_unit, people, raw_threshold)
        if rank == check.rank:
            out[label]["revoked"] = revoked(images, faces, people, t_b, fr, "embedding")
        print(f"{fr} real {label}: {short(out[label])}", flush=True)

    def face_templates(key: Any) -> np.ndarray:
        maker = TemplateMaker(key, kind="face", fr=fr)
        return np.stack([maker.template(im, f).vector for im, f in zip(images, faces)]).astype(np.float64)
    t_a, t_b = face_templates(KEY_A), face_templates(KEY_B)
    across = [t_a @ t_b.T] + [face_templates(a) @ face_templates(b).T for a, b in pairs[1:]]
    out["face"] = kind_figures(t_a, across, people, shipped_threshold("face", fr, None))
    matched, _ = across_pairs(t_a @ raw_unit.T, people, people)
    out["face"]["template_vs_original"] = {"match_rate": float(np.mean(matched >= raw_threshold))}
    out["face"]["revoked"] = revoked(images, faces, people, t_b, fr, "face")
    print(f"{fr} real face: {short(out['face'])}", flush=True)
    return out


def shipped_threshold(kind: str, fr: str, rank: int | None) -> float | None:
    """The default a new store of these templates starts from (``MEASURED``), if any."""
    row = measured_threshold(kind, fr, "faces64", template_version(kind, rank))
    return None if row is None else row.threshold


def kind_figures(t_a: np.ndarray, across: list[np.ndarray], people: np.ndarray, default: float | None,
                 probe_a: np.ndarray | None = None) -> dict[str, Any]:
    """Same-key verification of templates ``t_a`` (key A) and cross-key linkability of ``across``
    (one score matrix per pair of keys, the same faces under A_k x under B_k); with ``probe_a``
    (synthetic) the pairs are enrolment x probe instead."""
    if probe_a is None:
        same = verification(*within_pairs(t_a @ t_a.T, people), default)
    else:
        same = verification(*across_pairs(t_a @ probe_a.T, people, people), default)
    return {"same_key": same, "across_keys": unlinkability(across, people, people, same["fmr_1e-3_threshold"])}


def short(entry: dict[str, Any]) -> str:
    s, x = entry["same_key"], entry["across_keys"]
    return (f"EER {s['eer']:.3f} FNMR@1e-3 {s['fnmr_at_fmr_1e-3']:.3f} D_sys {x['d_sys']:.3f} "
            f"(floor {x['d_sys_floor']:.3f}; one pair of keys: mean {x['d_sys_one_pair_mean']:.3f}, "
            f"floor {x['d_sys_one_pair_floor_mean']:.3f})")


def synthetic_figures(n: int, fr: str, ranks: list[int], pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """faces64 identities: enrolment face x probe face (code nudged, camera changes); across keys,
    enrolment under A_k x probe under B_k."""
    face_a = TemplateMaker(KEY_A, kind="face", fr=fr)
    scene = Scene(SyntheticConfig(model="faces64", identities=n, fr=fr), face_a.protector.backend, face_a.fr,
                  has_encoder=True)
    ids = scene.ids
    out: dict[str, Any] = {"identities": n, "unprotected": verification(
        *across_pairs(face_a.fr.score_matrix(scene.enrol_t, scene.probe_t), ids, ids), None)}
    for rank in ranks:
        def project(embeddings: np.ndarray, key: Any, rank: int = rank) -> np.ndarray:
            return project_embedding(embeddings, template_projection(key, None, embeddings.shape[1], rank)
                                     .astype(np.float32))
        label = f"embedding rank {rank}"
        out[label] = kind_figures(project(scene.enrol_t, KEY_A),
                                  [project(scene.enrol_t, a) @ project(scene.probe_t, b).T for a, b in pairs], ids,
                                  shipped_threshold("embedding", fr, rank), probe_a=project(scene.probe_t, KEY_A))
        print(f"{fr} synthetic {label}: {short(out[label])}", flush=True)
    enrol_a, probe_a = face_a.aligned_templates(scene.enrol), face_a.aligned_templates(scene.probe)
    across = [enrol_a @ TemplateMaker(KEY_B, kind="face", fr=fr).aligned_templates(scene.probe).T]
    for a, b in pairs[1:]:
        across.append(TemplateMaker(a, kind="face", fr=fr).aligned_templates(scene.enrol)
                      @ TemplateMaker(b, kind="face", fr=fr).aligned_templates(scene.probe).T)
    out["face"] = kind_figures(enrol_a, across, ids, shipped_threshold("face", fr, None), probe_a=probe_a)
    print(f"{fr} synthetic face: {short(out['face'])}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fr", nargs="+", default=["sface", "dlib"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 32, 48, 64, 96, 128])
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--key-pairs", type=int, default=20, help="pairs of keys whose cross-key scores D_sys pools")
    parser.add_argument("--out", default="out/terminal_templates")
    args = parser.parse_args(argv)
    pairs = key_pairs(args.key_pairs)
    report: dict[str, Any] = {"fmr": FMR, "keys": [KEY_A.fingerprint, KEY_B.fingerprint], "key_pairs": len(pairs),
                              "real": {}, "synthetic": {}, "loadavg_before": load_average()}
    for fr in args.fr:
        start = time.perf_counter()
        report["real"][fr] = real_figures(fr, args.ranks, Path(args.photos), pairs)
        report["synthetic"][fr] = synthetic_figures(args.identities, fr, args.ranks, pairs)
        report.setdefault("seconds", {})[fr] = round(time.perf_counter() - start, 1)
        write_json(Path(args.out) / "terminal_templates.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
