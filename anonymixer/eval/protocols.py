"""The evaluation protocols (ISO/IEC 30136 vocabulary; Gomez-Barrero et al. 2018 for linkability).

    result = evaluate(EvalConfig(data=Path("faces/"), model="bundle.pt", fr="sface"))
    write_reports(result, Path("eval-out"))          # see ``report``

Every photo's face is FFHQ-aligned to 256 px and protected; the FR system then sees the protected
256 crop. Its own crop is aligned *inside the protected crop from the original landmarks mapped
through the FFHQ transform* rather than by re-detecting: the generator keeps the FFHQ layout, so
the geometry is the same for original and protected faces and only the identity changes; it also
works where a detector finds no face (random test weights, failed syntheses), which re-detection
would silently drop and so bias every rate. Original templates come from the original photo,
aligned the FR system's own way.

Protocols (each a list of scores, ``metrics`` convention: similarity, match when ``>= t``):

- ``baseline``: originals, mated vs non-mated (pairs ``i < j``); EER, AUC, TAR@FAR. Its thresholds
  (at each FAR, at the EER, and the FR model's published one) are the operating points below.
- ``utility``: protected faces under the same key scheme, mated vs non-mated.
- ``protection``: protected vs original of the same person (every pair, the same photo included);
  PSR = share that does not match.
- ``unlinkability``: the same people protected under key set A and under key set B; mated = same
  person across A and B, non-mated = different people; ``D_sys`` and ``D<->(s)``; *renewal rate* =
  share of mated A/B pairs that do not match (a renewed template does not match the revoked one).
- ``irreversibility``: an attacker re-encodes each protected face with our encoder and renders it
  (``naive``); with a stolen key (``stolen_key``) they also undo the mixer as far as its key
  material allows (``keymaterial.inverse``: exact for ``rotate``, the kept subspace for
  ``project``, nothing for ``swap``, whose identity layers are not recoverable). ASR =
  share of (reconstruction, original of the same person) pairs that match.
- ``stability``: the same faces and keys through each precision of an ONNX export (and torch): the
  cosine between templates and whether they still match the reference's.

Evaluation keys are derived from ``seed`` (``eval_key``): reproducible, and never for real use.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import AnonymixerError, EvaluationError
from ..keymaterial import KeyMaterial, inverse
from ..keys import Key
from ..runtime.base import Backend
from ..runtime.protector import Protector, faces_to_input, open_backend, output_to_faces
from . import metrics
from .faces import EvalFace, EvalSet, list_photos, load_eval_set
from ..face.detect import Detector, open_detector
from .fr import FaceRecognizer, open_recognizer, unit_rows

log = logging.getLogger("anonymixer.eval")

KEY_MODES = ("per-identity", "shared")
MIN_LINKABILITY_BINS = 10  # below this (fewer than 100 mated scores) D_sys is flagged as coarse


@dataclass
class EvalConfig:
    """What to evaluate. ``model``: torch model SPEC; ``onnx``: export folder; ``engines``: TensorRT
    engine folder. The protocols run on the first of them given; ``stability`` compares them all
    (every precision of ``onnx``). ``fr_options`` go to ``open_recognizer``."""

    data: Path
    model: str | None = "random:ffhq256"
    onnx: Path | None = None
    engines: Path | None = None
    key_mode: str = "per-identity"
    fr: str = "sface"
    fr_options: dict[str, Any] = field(default_factory=dict)
    detector: str | None = None
    seed: int = 0
    salt: str | None = None
    device: str = "cpu"
    batch: int = 8
    fars: tuple[float, ...] = metrics.DEFAULT_FARS
    stability_faces: int = 16


@dataclass
class EvalResult:
    """Everything ``report`` writes: settings, data summary, raw score lists and metrics per protocol."""

    settings: dict[str, Any]
    data: dict[str, Any]
    scores: dict[str, np.ndarray]          # "<protocol>/<list>" -> (K,) float64
    protocols: dict[str, dict[str, Any]]
    thresholds: dict[str, float]
    linkability: metrics.Linkability | None
    seconds: float = 0.0


def eval_key(seed: int, key_set: str, identity: str) -> Key:
    """A reproducible evaluation key for ``identity`` (``"*"`` when shared) in key set ``A`` or ``B``."""
    digest = hashlib.sha256(f"anonymixer/eval-key/v1\0{seed}\0{key_set}\0{identity}".encode()).digest()
    return Key(digest)


def keys_for(faces: list[EvalFace], key_mode: str, key_set: str, seed: int) -> list[Key]:
    """One key per face: its identity's (``per-identity``) or everyone's (``shared``)."""
    if key_mode not in KEY_MODES:
        raise EvaluationError(f"--key-mode {key_mode!r}: choose {' or '.join(KEY_MODES)}")
    return [eval_key(seed, key_set, f.identity if key_mode == "per-identity" else "*") for f in faces]


def within_pairs(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mated and non-mated scores of an ``(N, N)`` matrix of a set against itself (pairs ``i < j``)."""
    i, j = np.triu_indices(len(ids), 1)
    same = ids[i] == ids[j]
    return scores[i, j][same], scores[i, j][~same]


def across_pairs(scores: np.ndarray, ids_a: np.ndarray, ids_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mated and non-mated scores of an ``(N, M)`` matrix of two sets (every pair)."""
    same = ids_a[:, None] == ids_b[None, :]
    return scores[same], scores[~same]


def resize_faces(faces: np.ndarray, size: int) -> np.ndarray:
    """``(B, R, R, 3) uint8 -> (B, size, size, 3) uint8`` (area filter down, cubic up)."""
    if faces.shape[1] == size:
        return faces
    flag = cv2.INTER_AREA if faces.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size, size), interpolation=flag) for f in faces])


def protect_faces(backend: Backend, faces: list[EvalFace], keys: list[Key], salt: str | None, batch: int,
                  desc: str) -> tuple[np.ndarray, list[KeyMaterial]]:
    """Protect each face under its key -> ``(N, S, S, 3) uint8 RGB`` (resized to the crop size S) and
    each face's key material. The backend is opened once; one Protector per key."""
    size = faces[0].crop.shape[0]
    out = np.zeros((len(faces), size, size, 3), np.uint8)
    materials: list[KeyMaterial | None] = [None] * len(faces)
    groups: dict[str, tuple[Key, list[int]]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key.fingerprint, (key, []))[1].append(index)
    with tqdm(total=len(faces), desc=desc, unit="face", disable=None) as bar:
        for key, indices in groups.values():
            protector = Protector(None, key, backend=backend, salt=salt)  # shares the opened backend
            for start in range(0, len(indices), batch):
                chunk = indices[start:start + batch]
                protected = protector.protect(np.stack([faces[i].crop for i in chunk]))
                out[chunk] = resize_faces(protected, size)
                for i in chunk:
                    materials[i] = protector.key_material
                bar.update(len(chunk))
    return out, [m for m in materials if m is not None]


def reconstruct(backend: Backend, protected: np.ndarray, materials: list[KeyMaterial] | None, batch: int,
                desc: str) -> np.ndarray:
    """The irreversibility attacker: ``(N, S, S, 3) uint8 RGB`` protected faces -> reconstructions of
    the same shape, ``G(E(x))``, or with each face's stolen key material the mixer undone as far as
    it can be (``keymaterial.inverse``, run through the same mixer graph)."""
    size = protected.shape[1]
    out = np.zeros_like(protected)
    encoder, mixer, generator = (backend.stage(s) for s in ("encoder", "mixer", "generator"))
    groups: dict[int, tuple[KeyMaterial | None, list[int]]] = {}
    for index in range(len(protected)):
        material = None if materials is None else materials[index]
        groups.setdefault(id(material), (material, []))[1].append(index)
    mean = backend.info.stats().mean
    with tqdm(total=len(protected), desc=desc, unit="face", disable=None) as bar:
        for material, indices in groups.values():
            undo = None if material is None else inverse(material, mean).feeds()
            for start in range(0, len(indices), batch):
                chunk = indices[start:start + batch]
                x = faces_to_input(resize_faces(protected[chunk], backend.info.input_size), backend.info.input_size)
                w = encoder.run({"face": x})["w_real"]
                if undo is not None:
                    w = mixer.run({"w_real": w, **undo})["w_prot"]
                image = generator.run({"w_prot": w.astype(np.float32)})["image"]
                out[chunk] = resize_faces(output_to_faces(image), size)
                bar.update(len(chunk))
    return out


def templates(fr: FaceRecognizer, faces: list[EvalFace], crops_rgb: np.ndarray | None, batch: int = 32) -> np.ndarray:
    """FR templates ``(N, d)``: of the original photos (``crops_rgb`` None) or of 256 crops
    ``(N, S, S, 3) uint8 RGB`` aligned with the faces' mapped landmarks."""
    if crops_rgb is None:
        aligned = np.stack([f.fr_crop for f in faces])
    else:
        aligned = np.stack([fr.align(np.ascontiguousarray(c[..., ::-1]), f.crop_landmarks)
                            for c, f in zip(crops_rgb, faces)])
    return np.concatenate([fr.embed(aligned[i:i + batch]) for i in range(0, len(aligned), batch)])


def verification(mated: np.ndarray, non_mated: np.ndarray, fars: tuple[float, ...]) -> dict[str, Any]:
    """Score summaries + EER/AUC/TAR@FAR, or the reason they cannot be computed."""
    out: dict[str, Any] = {"scores": {"mated": _summary(mated), "non_mated": _summary(non_mated)}}
    if mated.size and non_mated.size:
        out["metrics"] = metrics.verification_metrics(mated, non_mated, fars)
    else:
        out["skipped"] = ("no mated pairs: every identity needs at least two photos" if not mated.size
                          else "no non-mated pairs: at least two identities are needed")
    return out


def rates(scores: np.ndarray, thresholds: dict[str, float], matching: bool) -> dict[str, float]:
    """Share of ``scores`` that match (``matching``) or do not match, at each named threshold."""
    if not scores.size:
        return {}
    return {name: (metrics.match_rate(scores, t) if matching else 1.0 - metrics.match_rate(scores, t))
            for name, t in thresholds.items()}


def _summary(scores: np.ndarray) -> dict[str, float] | None:
    return metrics.summarize(scores) if scores.size else None


def operating_thresholds(baseline: dict[str, Any], fr: FaceRecognizer) -> dict[str, float]:
    """The baseline's thresholds by name: ``far=0.01`` ..., ``eer``, and ``model`` (published)."""
    found: dict[str, float] = {}
    if "metrics" in baseline:
        m = baseline["metrics"]
        found.update({f"far={far}": point["threshold"] for far, point in m["tar_at_far"].items()})
        found["eer"] = m["eer_threshold"]
    if fr.threshold is not None:
        found["model"] = float(fr.threshold)
    return found


def open_main_backend(config: EvalConfig) -> Backend:
    """The backend the protocols run on: torch on ``model``, else ONNX Runtime (fp32, CPU) on
    ``onnx``, else TensorRT on ``engines``."""
    if config.model is not None:
        return open_backend("torch", config.model, device=config.device)
    if config.onnx is not None:
        return open_backend("ort", config.onnx, precision="fp32", providers="cpu")
    if config.engines is not None:
        return open_backend("trt", config.engines)
    raise EvaluationError("nothing to evaluate: give --model SPEC, --onnx DIR or --engines DIR")


def template_stability(variants: dict[str, Backend], reference: str, faces: list[EvalFace], keys: list[Key],
                       fr: FaceRecognizer, thresholds: dict[str, float], salt: str | None,
                       batch: int) -> dict[str, Any]:
    """Protect the same faces under the same keys on every backend in ``variants``; compare each
    variant's protected faces and templates with ``reference``'s."""
    protected = {name: protect_faces(backend, faces, keys, salt, batch, f"stability {name}")[0]
                 for name, backend in variants.items()}
    embedded = {name: templates(fr, faces, crops) for name, crops in protected.items()}
    ref, ref_pixels = embedded[reference], protected[reference].astype(np.float64)
    report: dict[str, Any] = {"reference": reference, "faces": len(faces), "variants": {}}
    for name in variants:
        if name == reference:
            continue
        cosine = np.sum(unit_rows(np.asarray(embedded[name], np.float64)) * unit_rows(np.asarray(ref, np.float64)), axis=1)
        score = fr.score(embedded[name], ref)
        report["variants"][name] = {
            "template_cosine": metrics.summarize(cosine),
            "score_vs_reference": metrics.summarize(score),
            "match_rate_vs_reference": rates(score, thresholds, matching=True),
            "pixel_mean_abs_diff": float(np.abs(protected[name] - ref_pixels).mean()),
            "pixel_max_abs_diff": float(np.abs(protected[name] - ref_pixels).max()),
        }
    return report


def evaluate(config: EvalConfig, fr: FaceRecognizer | None = None, detector: Detector | None = None) -> EvalResult:
    """Run every protocol (module docstring) on ``config.data``; ``fr`` and ``detector`` default to
    the ones ``config`` names."""
    start = time.perf_counter()
    list_photos(config.data)  # a wrong --data fails before anything loads
    detector = detector or open_detector(config.detector)
    fr = fr or open_recognizer(config.fr, **config.fr_options)
    backend = open_main_backend(config)
    try:
        evalset = load_eval_set(config.data, detector, fr, backend.info.input_size,
                                np.array(backend.info.crop_template) if backend.info.crop_template else None)
        _check_evalset(evalset, config.data)
        result = _run_protocols(config, backend, evalset, fr)
        result.settings.update(_settings(config, backend, fr, detector))
    finally:
        backend.close()
    result.seconds = time.perf_counter() - start
    return result


def _check_evalset(evalset: EvalSet, data: Path) -> None:
    identities = set(evalset.identities.tolist())
    if len(identities) < 2:
        raise EvaluationError(f"--data {data}: faces of {len(identities)} identit{'y' if len(identities) == 1 else 'ies'} "
                              "found; at least two identity sub-folders with detectable faces are needed")


def _run_protocols(config: EvalConfig, backend: Backend, evalset: EvalSet, fr: FaceRecognizer) -> EvalResult:
    faces, ids, fars = evalset.faces, evalset.identities, config.fars
    scores: dict[str, np.ndarray] = {}
    protocols: dict[str, dict[str, Any]] = {}

    original = templates(fr, faces, None)
    scores["baseline/mated"], scores["baseline/non_mated"] = within_pairs(fr.score_matrix(original, original), ids)
    protocols["baseline"] = verification(scores["baseline/mated"], scores["baseline/non_mated"], fars)
    thresholds = operating_thresholds(protocols["baseline"], fr)

    keys_a = keys_for(faces, config.key_mode, "A", config.seed)
    keys_b = keys_for(faces, config.key_mode, "B", config.seed)
    protected_a, materials_a = protect_faces(backend, faces, keys_a, config.salt, config.batch, "protect (keys A)")
    protected_b, _ = protect_faces(backend, faces, keys_b, config.salt, config.batch, "protect (keys B)")
    t_a, t_b = templates(fr, faces, protected_a), templates(fr, faces, protected_b)

    scores["utility/mated"], scores["utility/non_mated"] = within_pairs(fr.score_matrix(t_a, t_a), ids)
    protocols["utility"] = verification(scores["utility/mated"], scores["utility/non_mated"], fars)

    scores["protection/protected_vs_original"], _ = across_pairs(fr.score_matrix(t_a, original), ids, ids)
    protocols["protection"] = {
        "scores": {"protected_vs_original": _summary(scores["protection/protected_vs_original"])},
        "psr": rates(scores["protection/protected_vs_original"], thresholds, matching=False)}

    scores["unlinkability/mated"], scores["unlinkability/non_mated"] = across_pairs(fr.score_matrix(t_a, t_b), ids, ids)
    link = link_kde = None
    unlinkability: dict[str, Any] = verification(scores["unlinkability/mated"], scores["unlinkability/non_mated"], fars)
    if "metrics" in unlinkability:
        link = metrics.linkability(scores["unlinkability/mated"], scores["unlinkability/non_mated"])
        link_kde = metrics.linkability(scores["unlinkability/mated"], scores["unlinkability/non_mated"], method="kde")
        unlinkability.update({"d_sys": link.d_sys, "d_sys_kde": link_kde.d_sys, "omega": link.omega,
                              "bins": int(link.scores.size)})
        if link.scores.size < MIN_LINKABILITY_BINS:
            unlinkability["warning"] = (f"only {scores['unlinkability/mated'].size} mated comparisons "
                                        f"({link.scores.size} bins): D_sys is a coarse estimate; use more photos")
    unlinkability["renewal_rate"] = rates(scores["unlinkability/mated"], thresholds, matching=False)
    protocols["unlinkability"] = unlinkability

    attacks: dict[str, Any] = {}
    for name, materials in (("naive", None), ("stolen_key", materials_a)):
        recon = reconstruct(backend, protected_a, materials, config.batch, f"attack ({name})")
        found, _ = across_pairs(fr.score_matrix(templates(fr, faces, recon), original), ids, ids)
        scores[f"irreversibility/{name}"] = found
        attacks[name] = {"scores": _summary(found), "asr": rates(found, thresholds, matching=True)}
    protocols["irreversibility"] = attacks

    protocols["stability"] = stability_protocol(config, backend, faces, keys_a, fr, thresholds)
    data = {"folder": str(config.data), "faces": len(faces), "skipped": evalset.skipped,
            "identities": {name: int(n) for name, n in zip(*np.unique(ids, return_counts=True))},
            "pairs": {name: int(s.size) for name, s in scores.items()}}
    return EvalResult(settings={}, data=data, scores=scores, protocols=protocols, thresholds=thresholds,
                      linkability=link)


def stability_protocol(config: EvalConfig, backend: Backend, faces: list[EvalFace], keys: list[Key],
                       fr: FaceRecognizer, thresholds: dict[str, float]) -> dict[str, Any]:
    """Template stability of the first ``config.stability_faces`` faces across torch (``backend``,
    when ``config.model`` is set), every precision of ``config.onnx`` and ``config.engines``; the
    first of them is the reference. Variants that hold another model are left out with a note."""
    if config.onnx is None and config.engines is None:
        return {"skipped": "no ONNX export or TensorRT engines given (--onnx DIR, --engines DIR): "
                           "precisions and backends not compared"}
    subset, subkeys = faces[:config.stability_faces], keys[:config.stability_faces]
    variants: dict[str, Backend] = {}
    notes: list[str] = []
    try:
        if config.model is not None:
            variants["torch-fp32"] = backend
        if config.onnx is not None:
            from ..runtime.manifest import ExportManifest

            for precision in ExportManifest(config.onnx).precisions("encoder"):
                variants[f"ort-{precision}"] = (backend if config.model is None and precision == "fp32" else
                                                open_backend("ort", config.onnx, precision=precision, providers="cpu"))
        if config.engines is not None:
            trt = backend if config.model is None and config.onnx is None else open_backend("trt", config.engines)
            variants[f"trt-{getattr(trt, 'precision', 'engine')}"] = trt
        reference = next(iter(variants))  # torch, else ONNX fp32, else the engines
        for name, opened in list(variants.items()):
            if opened.info.description != variants[reference].info.description:
                notes.append(f"{name} holds another model ({opened.info.description}) than {reference} "
                             f"({variants[reference].info.description}): left out")
                del variants[name]
                if opened is not backend:
                    opened.close()
        if len(variants) < 2:
            return {"skipped": f"only {', '.join(variants)} available: nothing to compare with", "notes": notes}
        report = template_stability(variants, reference, subset, subkeys, fr, thresholds, config.salt, config.batch)
        report["notes"] = notes
        return report
    except AnonymixerError as exc:
        return {"skipped": f"template stability: {exc}", "notes": notes}
    finally:
        for name, opened in variants.items():
            if opened is not backend:
                opened.close()


def _settings(config: EvalConfig, backend: Backend, fr: FaceRecognizer, detector: Detector) -> dict[str, Any]:
    return {
        "data": str(config.data), "model": config.model, "onnx": str(config.onnx) if config.onnx else None,
        "engines": str(config.engines) if config.engines else None,
        "model_description": backend.info.description, "model_is_random": backend.info.is_random,
        "backend": backend.describe(), "key_mode": config.key_mode, "seed": config.seed,
        "salt": "default" if config.salt is None else "custom (not recorded)",
        "fr": {"name": fr.name, "metric": fr.metric, "input_size": fr.input_size, "threshold": fr.threshold,
               "licence": fr.licence, "score": "similarity (distances negated)", "options": config.fr_options},
        "detector": detector.name, "fars": list(config.fars),
        "alignment": "FFHQ 256 for the Protector; FR crop of protected faces aligned with the original "
                     "landmarks mapped through the FFHQ transform (no re-detection)",
        "linkability": "Gomez-Barrero et al. 2018, omega=1, histogram (min(N_mated/10, 100) bins); KDE as a check",
    }
