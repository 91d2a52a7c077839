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
- ``across_keys``: the same faces under keys A and B, mated = same person: ``D_sys``
  (Gomez-Barrero et al. 2018, histogram estimator of ``eval.metrics``; 0 = unlinkable), beside
  ``d_sys_floor``: the same estimator with the people shuffled on one side (what it reports for
  no linkage at all on this many pairs), the cross-key EER, and the share of mated pairs over the
  same-key threshold (a renewed template matching the old one);
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


def unlinkability(scores: np.ndarray, ids_a: np.ndarray, ids_b: np.ndarray, threshold: float,
                  rng: np.random.Generator) -> dict[str, Any]:
    """``scores (N, M)``: templates under key A x under key B; mated = same person."""
    mated, non_mated = across_pairs(scores, ids_a, ids_b)
    shuffled = ids_b[rng.permutation(len(ids_b))]
    floor_mated, floor_non_mated = across_pairs(scores, ids_a, shuffled)
    return {"d_sys": linkability(mated, non_mated).d_sys, "d_sys_floor": linkability(floor_mated, floor_non_mated).d_sys,
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


def real_figures(fr: str, ranks: list[int], photos: Path, rng: np.random.Generator) -> dict[str, Any]:
    face_a, face_b = TemplateMaker(KEY_A, kind="face", fr=fr), TemplateMaker(KEY_B, kind="face", fr=fr)
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
        projections = [template_projection(key, None, raw.shape[1], rank).astype(np.float32) for key in (KEY_A, KEY_B)]
        t_a, t_b = (project_embedding(raw, p).astype(np.float64) for p in projections)
        label = f"embedding rank {rank}" + (" (default)" if rank == check.rank else "")
        out[label] = kind_figures(t_a, t_b, people, shipped_threshold("embedding", fr, rank), rng)
        out[label]["stolen_key"] = stolen_key(projections[0], t_a, raw_unit, people, raw_threshold)
        if rank == check.rank:
            out[label]["revoked"] = revoked(images, faces, people, t_b, fr, "embedding")
        print(f"{fr} real {label}: {short(out[label])}", flush=True)
    t_a = np.stack([face_a.template(im, f).vector for im, f in zip(images, faces)]).astype(np.float64)
    t_b = np.stack([face_b.template(im, f).vector for im, f in zip(images, faces)]).astype(np.float64)
    out["face"] = kind_figures(t_a, t_b, people, shipped_threshold("face", fr, None), rng)
    matched, _ = across_pairs(t_a @ raw_unit.T, people, people)
    out["face"]["template_vs_original"] = {"match_rate": float(np.mean(matched >= raw_threshold))}
    out["face"]["revoked"] = revoked(images, faces, people, t_b, fr, "face")
    print(f"{fr} real face: {short(out['face'])}", flush=True)
    return out


def shipped_threshold(kind: str, fr: str, rank: int | None) -> float | None:
    """The default a new store of these templates starts from (``MEASURED``), if any."""
    row = measured_threshold(kind, fr, "faces64", template_version(kind, rank))
    return None if row is None else row.threshold


def kind_figures(t_a: np.ndarray, t_b: np.ndarray, people: np.ndarray, default: float | None,
                 rng: np.random.Generator, probe_a: np.ndarray | None = None) -> dict[str, Any]:
    """Same-key verification and cross-key linkability of templates ``t_a`` (key A), ``t_b`` (key B)
    of the same faces; with ``probe_a`` (synthetic) the pairs are enrolment x probe instead."""
    if probe_a is None:
        same = verification(*within_pairs(t_a @ t_a.T, people), default)
    else:
        same = verification(*across_pairs(t_a @ probe_a.T, people, people), default)
    return {"same_key": same, "across_keys": unlinkability(t_a @ t_b.T, people, people,
                                                           same["fmr_1e-3_threshold"], rng)}


def short(entry: dict[str, Any]) -> str:
    s, x = entry["same_key"], entry["across_keys"]
    return (f"EER {s['eer']:.3f} FNMR@1e-3 {s['fnmr_at_fmr_1e-3']:.3f} D_sys {x['d_sys']:.3f} "
            f"(floor {x['d_sys_floor']:.3f})")


def synthetic_figures(n: int, fr: str, ranks: list[int], rng: np.random.Generator) -> dict[str, Any]:
    """faces64 identities: enrolment face x probe face (code nudged, camera changes)."""
    face_a, face_b = TemplateMaker(KEY_A, kind="face", fr=fr), TemplateMaker(KEY_B, kind="face", fr=fr)
    scene = Scene(SyntheticConfig(model="faces64", identities=n, fr=fr), face_a.protector.backend, face_a.fr,
                  has_encoder=True)
    ids = scene.ids
    out: dict[str, Any] = {"identities": n, "unprotected": verification(
        *across_pairs(face_a.fr.score_matrix(scene.enrol_t, scene.probe_t), ids, ids), None)}
    for rank in ranks:
        p_a, p_b = (template_projection(key, None, scene.enrol_t.shape[1], rank).astype(np.float32)
                    for key in (KEY_A, KEY_B))
        label = f"embedding rank {rank}"
        out[label] = kind_figures(project_embedding(scene.enrol_t, p_a), project_embedding(scene.probe_t, p_b), ids,
                                  shipped_threshold("embedding", fr, rank), rng,
                                  probe_a=project_embedding(scene.probe_t, p_a))
        print(f"{fr} synthetic {label}: {short(out[label])}", flush=True)
    enrol_a, probe_a = face_a.aligned_templates(scene.enrol), face_a.aligned_templates(scene.probe)
    out["face"] = kind_figures(enrol_a, face_b.aligned_templates(scene.probe), ids, shipped_threshold("face", fr, None),
                               rng, probe_a=probe_a)
    print(f"{fr} synthetic face: {short(out['face'])}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fr", nargs="+", default=["sface", "dlib"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 32, 48, 64, 96, 128])
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--out", default="out/terminal_templates")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"fmr": FMR, "keys": [KEY_A.fingerprint, KEY_B.fingerprint], "real": {}, "synthetic": {},
                              "loadavg_before": load_average()}
    for fr in args.fr:
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        report["real"][fr] = real_figures(fr, args.ranks, Path(args.photos), rng)
        report["synthetic"][fr] = synthetic_figures(args.identities, fr, args.ranks, rng)
        report.setdefault("seconds", {})[fr] = round(time.perf_counter() - start, 1)
        write_json(Path(args.out) / "terminal_templates.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
