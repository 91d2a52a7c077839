"""The synthetic evaluation: identities are the model's own codes, so no face dataset is needed.

    result = evaluate_synthetic(SyntheticConfig(model="faces64", identities=200))
    write_synthetic_reports(result, Path("eval-synthetic"))      # see ``synthetic_report``

Identity ``i`` is a code ``w_i`` (``z ~ N(0, I)`` through the mapping graph). Its *enrolment* face
is ``G(w_i)``; its *probe* (a mated sample) is the same code nudged in the whitened space
(``w_i + noise * C^1/2 n``) and drawn, then changed as a camera would change it: a small crop,
a pose-like warp, colour, blur and JPEG (``augment``). The recogniser (dlib by default) aligns each
face at the model's crop template (the generator keeps its layout) and scores enrolment x probe:
one mated pair per identity, every other pair non-mated.

Protection runs the product's own graphs. With the model's encoder (``through_encoder``), a face
is protected as in production, ``G(mix(E(x)))``; without it (an encoder not trained yet), the code
is known and the protected face is ``G(mix(w))``, the probe then gets the same camera changes after
protection. Per mixer mode (``rotate``, ``rotate`` without the radius guard, ``project``, ``swap``):

- ``baseline``: originals, enrolment x probe: EER, TAR@FAR; its FAR = 0.1 % threshold is *the
  original system's* operating point used below.
- ``utility``: protected enrolment x protected probe under one key: EER, TAR@FAR 1e-3.
- ``protection``: protected probe vs the person's original enrolment: PSR = share not matching.
- ``unlinkability``: protected enrolment under key A x protected probe under key B: ``D_sys``;
  ``revocability`` = share of mated A/B pairs that do not match.
- ``irreversibility``: ``stolen_key``: the attacker re-encodes the protected enrolment (without
  an encoder: is handed its exact protected code), undoes the mixer with the key material
  (``keymaterial.inverse``), regenerates and matches the original enrolment; ``no_key``: the same
  without the undo. ASR = share that matches.

``project`` is swept over its rank ``r`` (utility against the stolen-key attack). Identity codes,
noise and augmentations come from ``seed``; evaluation keys from ``protocols.eval_key``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import EvaluationError
from ..keymaterial import KeyMaterial, check_mode, inverse, key_material
from ..models.bundle import ModelBundle, resolve_spec
from ..runtime.base import Backend
from ..runtime.protector import faces_to_input, output_to_faces
from . import metrics
from .fr import FaceRecognizer, open_recognizer
from .protocols import across_pairs, eval_key, operating_thresholds, rates, resize_faces, verification

log = logging.getLogger("anonymixer.eval")

FR_SIDE = 256          # faces are upscaled to this side before the recogniser aligns them
THRESHOLD = "far=0.001"
# The five landmarks of an FFHQ crop, (x, y) fractions (eyes as face.align's FFHQ_EYE_FRACTIONS).
FFHQ_TEMPLATE = ((0.375, 0.475), (0.625, 0.475), (0.5, 0.6), (0.41, 0.72), (0.59, 0.72))


@dataclass
class SyntheticConfig:
    """What ``evaluate --synthetic`` measures (one field per option)."""

    model: str | ModelBundle = "faces64"
    identities: int = 200
    modes: tuple[str, ...] = ("rotate", "rotate-noguard", "project", "swap")
    ranks: tuple[int, ...] = ()          # project sweep; () -> D/10, D/4, D/2, 3D/4, 9D/10
    rank: int | None = None              # project's rank in the mode table (None: D // 2)
    code_noise: float = 0.35             # mated samples: whitened code noise (per dimension)
    through_encoder: bool | None = None  # None: use the encoder when the model has one trained
    fr: str = "dlib"
    seed: int = 0
    salt: str = "anonymixer-synthetic-evaluation"
    batch: int = 32
    fars: tuple[float, ...] = metrics.DEFAULT_FARS


@dataclass
class SyntheticResult:
    settings: dict[str, Any]
    baseline: dict[str, Any]
    thresholds: dict[str, float]
    modes: dict[str, dict[str, Any]]                   # row label -> figures
    sweep: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera's changes to ``(S, S, 3) uint8 RGB``: crop, pose-like warp, colour, blur, JPEG."""
    s = image.shape[0]
    angle, scale = rng.uniform(-6, 6), rng.uniform(0.94, 1.06)
    warp = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    warp[:, 2] += rng.uniform(-0.03, 0.03, 2) * s
    out = cv2.warpAffine(image, warp, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x = out.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.8, 1.2)                          # saturation
    x = (x - x.mean()) * rng.uniform(0.85, 1.15) + x.mean() * rng.uniform(0.85, 1.15)  # contrast, brightness
    out = np.clip(x, 0, 255).astype(np.uint8)
    sigma = rng.uniform(0.0, 0.8) * s / 64
    if sigma > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    ok, jpeg = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 91))])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else None
    return out if decoded is None else np.ascontiguousarray(decoded[..., ::-1])


class Scene:
    """The model's graphs, its identities and the recogniser: what every mode is measured on."""

    def __init__(self, config: SyntheticConfig, backend: Backend, fr: FaceRecognizer, has_encoder: bool) -> None:
        self.config, self.backend, self.fr = config, backend, fr
        self.info = backend.info
        self.through_encoder = has_encoder if config.through_encoder is None else config.through_encoder
        template = getattr(self.info, "crop_template", None) or FFHQ_TEMPLATE
        self.landmarks = np.asarray(template, np.float64) * FR_SIDE
        rng = np.random.default_rng(config.seed)
        n, d = config.identities, self.info.style_dim
        self.ids = np.arange(n)
        z = rng.standard_normal((n, d)).astype(np.float32)
        self.codes = self._run("mapping", "z", "w_key", z)
        noise = rng.standard_normal(self.codes.shape) @ self.info.stats().sqrt_cov()
        self.probe_codes = (self.codes + config.code_noise * noise).astype(np.float32)
        self.camera = np.random.default_rng(config.seed + 1)
        self.enrol = self.draw(self.codes)
        self.probe = self.shoot(self.draw(self.probe_codes))
        self.enrol_t, self.probe_t = self.templates(self.enrol), self.templates(self.probe)

    def _run(self, stage: str, name: str, out: str, x: np.ndarray, **extra: np.ndarray) -> np.ndarray:
        runner, b = self.backend.stage(stage), self.config.batch
        return np.concatenate([runner.run({name: x[i:i + b], **extra})[out] for i in range(0, len(x), b)])

    def draw(self, codes: np.ndarray) -> np.ndarray:
        """``G(w)``: ``(N, L, D)`` codes -> ``(N, R, R, 3) uint8 RGB``."""
        return output_to_faces(self._run("generator", "w_prot", "image", codes))

    def shoot(self, faces: np.ndarray) -> np.ndarray:
        """The camera's changes (``augment``), drawn from the scene's own stream (same for every mode)."""
        rng = np.random.default_rng(self.config.seed + 1)
        return np.stack([augment(f, rng) for f in faces])

    def encode(self, faces: np.ndarray) -> np.ndarray:
        size = self.info.input_size
        return self._run("encoder", "face", "w_real", faces_to_input(resize_faces(faces, size), size))

    def mix(self, codes: np.ndarray, material: KeyMaterial) -> np.ndarray:
        return self._run("mixer", "w_real", "w_prot", codes, **material.feeds())

    def templates(self, faces: np.ndarray) -> np.ndarray:
        big = resize_faces(faces, FR_SIDE)
        crops = np.stack([self.fr.align(np.ascontiguousarray(f[..., ::-1]), self.landmarks) for f in big])
        return np.concatenate([self.fr.embed(crops[i:i + 64]) for i in range(0, len(crops), 64)])

    def scores(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mated and non-mated scores of templates ``a`` x ``b`` (identity ``i`` is row ``i``)."""
        return across_pairs(self.fr.score_matrix(a, b), self.ids, self.ids)

    def protect(self, faces: np.ndarray, codes: np.ndarray, material: KeyMaterial, probe: bool) -> np.ndarray:
        """Protected faces: ``G(mix(E(x)))`` through the encoder, else ``G(mix(w))`` (+ the camera)."""
        if self.through_encoder:
            return self.draw(self.mix(self.encode(faces), material))
        out = self.draw(self.mix(codes, material))
        return self.shoot(out) if probe else out


def measure_mode(scene: Scene, backend: Backend, label: str, thresholds: dict[str, float]) -> dict[str, Any]:
    """Every protocol of the module docstring for the mixer of ``backend`` (one table row)."""
    config, info = scene.config, backend.info
    scene.backend, scene.info = backend, info
    materials = [key_material(eval_key(config.seed, key_set, "*"), config.salt, info.mixer_mode, info.stats(),
                              info.n_latent, mapping=backend.stage("mapping"), rank=info.project_rank)
                 for key_set in ("A", "B")]
    enrol_a = scene.protect(scene.enrol, scene.codes, materials[0], probe=False)
    probe_a = scene.protect(scene.probe, scene.probe_codes, materials[0], probe=True)
    probe_b = scene.protect(scene.probe, scene.probe_codes, materials[1], probe=True)
    t_enrol_a, t_probe_a, t_probe_b = (scene.templates(x) for x in (enrol_a, probe_a, probe_b))
    utility = verification(*scene.scores(t_enrol_a, t_probe_a), config.fars)
    protected_vs_original, _ = scene.scores(t_probe_a, scene.enrol_t)
    linked, unlinked = scene.scores(t_enrol_a, t_probe_b)
    row: dict[str, Any] = {
        "mode": info.mixer_mode, "rank": info.project_rank, "utility": utility,
        "psr": rates(protected_vs_original, thresholds, matching=False),
        "d_sys": metrics.linkability(linked, unlinked).d_sys,
        "revocability": rates(linked, thresholds, matching=False)}
    attacks: dict[str, Any] = {}
    codes = scene.encode(enrol_a) if scene.through_encoder else scene.mix(scene.codes, materials[0])
    for name, undo in (("no_key", None), ("stolen_key", inverse(materials[0], info.stats().mean))):
        recon = scene.draw(codes if undo is None else scene.mix(codes, undo))
        found, _ = scene.scores(scene.templates(recon), scene.enrol_t)
        attacks[name] = rates(found, thresholds, matching=True)
    row["asr"] = attacks
    row["faces"] = {"enrol": scene.enrol[:8], "protected": enrol_a[:8], "protected_b": probe_b[:8]}
    return row


def evaluate_synthetic(config: SyntheticConfig, fr: FaceRecognizer | None = None) -> SyntheticResult:
    """Run the synthetic protocols for every mode in ``config.modes`` and the ``project`` sweep."""
    from ..runtime.torch import TorchBackend

    start = time.perf_counter()
    for mode in config.modes:
        check_mode(mode.partition("-")[0])
    if config.identities < 2:
        raise EvaluationError("--synthetic needs at least 2 identities (200 or more for the FAR = 0.1 % figures)")
    bundle = resolve_spec(config.model)
    fr = fr or open_recognizer(config.fr)

    def backend_for(mode: str, rank: int | None = None) -> TorchBackend:
        name, _, guard = mode.partition("-")
        return TorchBackend(bundle, mixer_mode=name, project_rank=rank, radius_guard=guard != "noguard")

    first = backend_for(config.modes[0], config.rank)
    scene = Scene(config, first, fr, has_encoder=bundle.encoder is not None)
    baseline = verification(*scene.scores(scene.enrol_t, scene.probe_t), config.fars)
    thresholds = {k: v for k, v in operating_thresholds(baseline, fr).items() if k in (THRESHOLD, "model")}
    if THRESHOLD not in thresholds:
        raise EvaluationError("the baseline has no FAR = 0.1 % threshold: evaluate more identities (>= 40)")
    result = SyntheticResult(settings=_settings(config, scene, fr), baseline=baseline, thresholds=thresholds,
                             modes={})
    for mode in tqdm(config.modes, desc="mixer modes", unit="mode", disable=None):
        result.modes[mode] = measure_mode(scene, backend_for(mode, config.rank), mode, thresholds)
    d = scene.info.style_dim
    for rank in tqdm(config.ranks or sorted({max(1, round(d * f)) for f in (0.1, 0.25, 0.5, 0.75, 0.9)}),
                     desc="project sweep", unit="rank", disable=None):
        row = measure_mode(scene, backend_for("project", rank), f"project r={rank}", thresholds)
        result.sweep.append({k: v for k, v in row.items() if k != "faces"})
    result.seconds = time.perf_counter() - start
    return result


def _settings(config: SyntheticConfig, scene: Scene, fr: FaceRecognizer) -> dict[str, Any]:
    info = scene.info
    return {"model": info.description, "identities": config.identities, "code_noise": config.code_noise,
            "through_encoder": scene.through_encoder, "fr": getattr(fr, "describe", lambda: fr.name)(),
            "seed": config.seed, "layout": f"L={info.n_latent}, D={info.style_dim}, R={info.output_resolution}",
            "threshold": THRESHOLD}
