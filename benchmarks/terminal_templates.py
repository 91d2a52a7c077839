"""The access terminal's templates on real people and on faces64's synthetic identities, both kinds.

    python benchmarks/terminal_templates.py [--fr sface dlib] [--photos out/photos] [--out out/terminal_templates]

Real people: the 79 faces of nine people with 6-11 photos each that ``faces64_real_people.py``
uses (dlib 19.5.0's documentation examples, fetched with ``pip download``): five LFW "Johns" and
the four actors of ``bald_guys.jpg``. Synthetic: ``--identities`` faces64 identities
(``eval.synthetic.Scene``: an enrolment face and a probe face per code, the probe's code nudged
and camera-changed). For each recogniser and kind (``embedding`` at several ranks, ``face``):

- ``unprotected``: the recogniser's own embeddings and score (the baseline);
- ``same_key``: templates under one key: EER; FNMR at FMR 1e-3 calibrated on this set's impostor
  pairs, and FNMR/FMR at the shipped default threshold (``terminal.thresholds.MEASURED``);
- ``across_keys``: a person's templates under key A vs under key B: ``D_sys`` (Gomez-Barrero et
  al. 2018; 0 = unlinkable) and the share of such pairs that would match (renewal);
- ``revoked_accepted``: every person enrolled (first photo) under key A in a real store, A revoked,
  everyone re-enrolled under key B, then every photo verified against every name: accepts that
  only a revoked template could have given (must be 0);
- ``stolen_key`` (embedding): an attacker holding the key and a template undoes the rotation,
  fills the erased directions with the population mean, and matches the result against the
  person's real embeddings at the recogniser's FMR-1e-3 threshold: attack success rate;
  (face): the template vs the person's unprotected embedding, at the same threshold.

Writes ``--out``/terminal_templates.json.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anonymixer.atomic import write_json
from anonymixer.eval.fr import unit_rows
from anonymixer.eval.metrics import eer, linkability, threshold_at_far
from anonymixer.eval.protocols import across_pairs, eval_key, within_pairs
from anonymixer.eval.synthetic import Scene, SyntheticConfig
from anonymixer.face.detect import Face
from anonymixer.runtime.protector import open_backend
from anonymixer.terminal import Terminal
from anonymixer.terminal.templates import TemplateMaker
from anonymixer.terminal.thresholds import measured_threshold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faces64_encoder import DLIB_EXAMPLES, archive_member  # noqa: E402
from faces64_real_people import BALD_GUYS, JOHNS, REQUIREMENT  # noqa: E402

FMR = 1e-3


def real_people(folder: Path, detector: Any) -> list[tuple[np.ndarray, Face, str]]:
    """``(image BGR, face, person)`` for the 79 faces of nine people (as ``faces64_real_people``)."""
    import cv2

    faces = []
    archive_member(folder, REQUIREMENT, f"{DLIB_EXAMPLES}/faces/bald_guys.jpg")
    tar_path = sorted(folder.glob("dlib-19.5.0.tar.gz"))[-1]
    with tarfile.open(tar_path) as tar:
        members = sorted(m.name for m in tar.getmembers()
                         if m.name.startswith(f"{DLIB_EXAMPLES}/johns/") and m.name.endswith(".jpg"))
    for member in members:
        person = member.split("/")[-2]
        if person in JOHNS:
            image = cv2.imread(str(archive_member(folder, REQUIREMENT, member)), cv2.IMREAD_COLOR)
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
    out = {"eer": eer(mated, non_mated).rate, "mated_pairs": int(mated.size), "non_mated_pairs": int(non_mated.size),
           "fmr_1e-3_threshold": calibrated, "fnmr_at_fmr_1e-3": float(np.mean(mated < calibrated)),
           "fmr_resolved": bool(non_mated.size * FMR >= 1.0)}
    if default is not None:
        out.update({"default_threshold": default, "fnmr_at_default": float(np.mean(mated < default)),
                    "fmr_at_default": float(np.mean(non_mated >= default))})
    return out


def unlinkability(a: np.ndarray, b: np.ndarray, people: np.ndarray, threshold: float) -> dict[str, Any]:
    """Templates of the same faces under keys A and B: mated = same person (every photo pair)."""
    mated, non_mated = across_pairs(a @ b.T, people, people)
    return {"d_sys": linkability(mated, non_mated).d_sys, "cross_key_eer": eer(mated, non_mated).rate,
            "renewed_pairs_matching": float(np.mean(mated >= threshold))}


def stolen_key(maker: TemplateMaker, templates: np.ndarray, raw_unit: np.ndarray, people: np.ndarray,
               raw_threshold: float) -> dict[str, Any]:
    """The attacker's reconstruction ``unit(s * unit(t M^+) + m (I - P))`` vs the real unit embeddings
    (``M = P Q^T``, so ``t M^+`` is the direction of ``x P``; ``m`` the population mean, ``s`` the
    typical norm of ``x P``: both known to anyone with public faces)."""
    assert maker.projection is not None
    projection = maker.projection.astype(np.float64)
    pinv = np.linalg.pinv(projection, rcond=1e-4)
    kept = projection @ pinv                                              # P (row vectors: x @ P)
    mean = raw_unit.mean(0)
    scale = float(np.mean(np.linalg.norm(raw_unit @ kept, axis=1)))
    guess = unit_rows(unit_rows(templates @ pinv) * scale + mean @ (np.eye(len(mean)) - kept))
    mated, _ = across_pairs(guess @ raw_unit.T, people, people)
    return {"attack_success_rate": float(np.mean(mated >= raw_threshold)), "pairs": int(mated.size)}


def raw_scores(maker: TemplateMaker, raw: np.ndarray, people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return within_pairs(maker.fr.score_matrix(raw, raw), people)


def revoked_accepted(images: list[np.ndarray], faces: list[Face], people: np.ndarray, fr: str, kind: str,
                     rank: int | None) -> dict[str, Any]:
    """Through a real store: everyone enrolled (first photo) under key A, A revoked, each enrolment
    photo verified (must all be rejected); everyone re-enrolled under B, and every photo's B
    template scored against the retired A templates (what retiring them prevents)."""
    key_a, key_b = eval_key(1, "A", "*"), eval_key(1, "B", "*")
    first = {p: i for i, p in reversed(list(enumerate(people)))}
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "site.db"
        with Terminal.open(db, key_a, kind=kind, fr=fr, rank=rank) as terminal:
            for person, i in first.items():
                terminal.enrol(person, [images[i]])
            retired = terminal.revoke(key_a.fingerprint)
            accepted = sum(terminal.verify(p, images[i]).accepted for p, i in first.items())
        with Terminal.open(db, key_b, kind=kind, fr=fr, rank=rank) as terminal:
            for person, i in first.items():
                terminal.enrol(person, [images[i]])
            rows = terminal.store.connection().execute(
                "SELECT vector FROM templates WHERE key_fingerprint = ?", (key_a.fingerprint,)).fetchall()
            old = np.stack([np.frombuffer(r[0], "<f4") for r in rows])
            assert terminal.maker is not None
            probes = np.stack([terminal.maker.template(im, f).vector for im, f in zip(images, faces)])
            over = int(np.sum(probes @ old.T >= terminal.threshold()))
    return {"retired": retired, "verifications_after_revoke": len(first), "revoked_templates_accepted": accepted,
            "new_key_probes_over_threshold_on_retired": over, "comparisons": int(len(images) * len(old))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fr", nargs="+", default=["sface", "dlib"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 32, 48, 64, 96, 128])
    parser.add_argument("--identities", type=int, default=300)
    parser.add_argument("--photos", default="out/photos")
    parser.add_argument("--out", default="out/terminal_templates")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"fmr": FMR, "real": {}, "synthetic": {}}
    key_a, key_b = eval_key(0, "A", "*"), eval_key(0, "B", "*")
    for fr in args.fr:
        start = time.perf_counter()
        makers = {("face", None): (TemplateMaker(key_a, kind="face", fr=fr), TemplateMaker(key_b, kind="face", fr=fr))}
        for rank in args.ranks:
            makers[("embedding", rank)] = (TemplateMaker(key_a, kind="embedding", fr=fr, rank=rank),
                                           TemplateMaker(key_b, kind="embedding", fr=fr, rank=rank))
        base = makers[("face", None)][0]
        data = real_people(Path(args.photos), base.detector)
        images, faces = [d[0] for d in data], [d[1] for d in data]
        people = np.array([d[2] for d in data])
        raw = np.concatenate([base.fr.embed(base.fr.align(im, f.landmarks)[None]) for im, f in zip(images, faces)])
        raw_unit = unit_rows(raw.astype(np.float64))
        mated, non_mated = raw_scores(base, raw, people)
        real: dict[str, Any] = {"faces": len(people), "people": int(len(set(people))),
                                "unprotected": verification(mated, non_mated, base.fr.threshold)}
        raw_cos = within_pairs(raw_unit @ raw_unit.T, people)[1]
        raw_threshold = threshold_at_far(raw_cos, FMR)
        for (kind, rank), (maker_a, maker_b) in makers.items():
            label = kind if rank is None else f"{kind} rank {rank}"
            t_a = np.stack([maker_a.template(im, f).vector for im, f in zip(images, faces)]).astype(np.float64)
            t_b = np.stack([maker_b.template(im, f).vector for im, f in zip(images, faces)]).astype(np.float64)
            default = measured_threshold(kind, maker_a.fr_id, maker_a.model_id, maker_a.version)
            entry = {"same_key": verification(*within_pairs(t_a @ t_a.T, people),
                                              None if default is None else default.threshold)}
            threshold = entry["same_key"]["fmr_1e-3_threshold"]
            entry["across_keys"] = unlinkability(t_a, t_b, people, threshold)
            if kind == "embedding":
                entry["stolen_key"] = stolen_key(maker_a, t_a, raw_unit, people, raw_threshold)
            else:
                matched, _ = across_pairs(t_a @ raw_unit.T, people, people)
                entry["template_vs_original"] = {"match_rate": float(np.mean(matched >= raw_threshold))}
            real[label] = entry
            print(f"{fr} real {label}: EER {entry['same_key']['eer']:.3f} D_sys {entry['across_keys']['d_sys']:.3f}",
                  flush=True)
        real["raw_cosine_threshold_fmr_1e-3"] = raw_threshold
        real["revoked"] = {kind: revoked_accepted(images, faces, people, fr, kind, None) for kind in ("embedding", "face")}
        report["real"][fr] = real
        report["synthetic"][fr] = synthetic(args.identities, fr, makers)
        report.setdefault("seconds", {})[fr] = round(time.perf_counter() - start, 1)
        write_json(Path(args.out) / "terminal_templates.json", report)
    return 0


def synthetic(n: int, fr: str, makers: dict) -> dict[str, Any]:
    """faces64 identities: enrolment face x probe face (code nudged, camera changes)."""
    backend = open_backend("torch", "faces64")
    base = makers[("face", None)][0]
    scene = Scene(SyntheticConfig(model="faces64", identities=n, fr=fr), backend, base.fr, has_encoder=True)
    ids = scene.ids
    out: dict[str, Any] = {"identities": n,
                           "unprotected": verification(*across_pairs(base.fr.score_matrix(scene.enrol_t, scene.probe_t),
                                                                     ids, ids), None)}
    for (kind, rank), (maker_a, maker_b) in makers.items():
        label = kind if rank is None else f"{kind} rank {rank}"
        enrol_a, probe_a = maker_a.aligned_templates(scene.enrol), maker_a.aligned_templates(scene.probe)
        probe_b = maker_b.aligned_templates(scene.probe)
        default = measured_threshold(kind, maker_a.fr_id, maker_a.model_id, maker_a.version)
        entry = {"same_key": verification(*across_pairs(enrol_a @ probe_a.T, ids, ids),
                                          None if default is None else default.threshold)}
        entry["across_keys"] = unlinkability(enrol_a, probe_b, ids, entry["same_key"]["fmr_1e-3_threshold"])
        out[label] = entry
        print(f"{fr} synthetic {label}: EER {entry['same_key']['eer']:.3f} D_sys {entry['across_keys']['d_sys']:.3f}",
              flush=True)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
