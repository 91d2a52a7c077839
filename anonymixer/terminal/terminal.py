"""The access terminal: enrol, verify, identify, revoke and forget on one template store.

    with Terminal.open("site.db", load_key("site.key")) as terminal:
        terminal.enrol("Ada", [photo_bgr])
        decision = terminal.verify("Ada", probe_bgr)      # Decision(accepted, score, threshold, ...)
    with Terminal.open("site.db") as terminal:              # no key: list, audit, revoke, forget
        terminal.revoke(old_key.fingerprint)

A store holds templates of one kind, recogniser, model and key derivation (``StoreIdentity``),
fixed when it is created; opening it with anything else is refused in one line naming both sides.
Its *active key* is the key its templates are under: set by the first enrolment, cleared by
revoking that key, after which the next enrolment (under a new key) sets it again. A revoked key
is refused for good, and its templates never match. Every operation leaves an audit row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnonymixerError, StoreMismatch, TerminalError, UnknownSubject, printable
from ..keys import Key, resolve_salt
from .store import FORGOTTEN, AuditEntry, Store
from .templates import DEFAULT_FR, DEFAULT_KIND, DEFAULT_MODEL, TemplateMaker, check_kind, face_png
from .thresholds import DEFAULT_FMR, Calibration, calibrate, impostor_scores, measured_threshold

MAX_NAME_CHARS = 200
CANDIDATES = 5
FINGERPRINT = re.compile(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}")
IDENTITY_FIELDS = ("kind", "recogniser", "model_id", "model_digest", "template", "salt_id")


@dataclass(frozen=True)
class Decision:
    accepted: bool
    score: float            # cosine of templates, higher = more alike; -1.0 when nothing to compare
    threshold: float
    name: str | None        # verify: the claimed name; identify: the best match, None when rejected
    kind: str
    fingerprint: str
    candidates: list[tuple[str, float]]   # identify: the best few (name, score); verify: []


@dataclass(frozen=True)
class Enrolment:
    name: str
    templates: int
    protected_face_png: bytes   # generated from the first photo, for display; never the original


@dataclass(frozen=True)
class Subject:
    name: str
    templates: int          # active templates (under the store's active key)
    enrolled_at: str
    protected_face_png: bytes | None


@dataclass(frozen=True)
class AuditRow:
    time: str
    action: str
    subject: str | None
    outcome: str
    score: float | None
    threshold: float | None
    fingerprint: str | None
    detail: str | None
    source: str | None = None


def salt_id(salt: bytes | str | None) -> str:
    """A public id of the deployment salt: two salts give unrelated templates from one key."""
    return hashlib.sha256(b"anonymixer/terminal/salt/v1\0" + resolve_salt(salt)).hexdigest()[:16]


def check_name(name: object) -> str:
    """A subject name as given (quotes, SQL, unicode, newlines are kept literally); refuses only
    empty names, NUL and names longer than ``MAX_NAME_CHARS``."""
    if not isinstance(name, str) or not name.strip():
        raise TerminalError("a subject name must be non-empty text")
    if "\0" in name or len(name) > MAX_NAME_CHARS:
        raise TerminalError(f"subject name {printable(name[:40])!r}...: at most {MAX_NAME_CHARS} characters, no NUL")
    return name


def check_image(image: object, label: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TerminalError(f"{printable(label)}: expected a (H, W, 3) uint8 BGR image")
    return image


class Terminal:
    """See the module docstring. Safe to share between threads."""

    def __init__(self, store: Store, maker: TemplateMaker | None) -> None:
        self.store = store
        self.maker = maker
        self.fingerprint = maker.fingerprint if maker is not None else None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, db: str | Path, key: Key | None = None, *, kind: str | None = None, fr: str | None = None,
             model: str | None = None, detector: str | None = None, salt: str | None = None,
             create: bool = True, rank: int | None = None) -> "Terminal":
        """Open (or, with a key and ``create``, make) the store ``db``. Without a key only store
        operations work (subjects, audit, revoke, forget)."""
        store = Store(db, create=create and key is not None)
        try:
            meta = store.meta()
            if key is None:
                return cls(store, None)
            check_key(store, meta, key.fingerprint)
            requested = {"kind": kind, "recogniser": fr}
            for field_name, value in requested.items():
                if value is not None and field_name in meta and meta[field_name] != value:
                    raise mismatch(store, field_name, meta[field_name], value)
            if kind is not None:
                check_kind(kind)
            stored_rank = int(meta["rank"]) if meta.get("rank") else None
            maker = TemplateMaker(key, kind=meta.get("kind", kind or DEFAULT_KIND),
                                  fr=meta.get("recogniser", fr or DEFAULT_FR),
                                  model=model or meta.get("model_spec", DEFAULT_MODEL), detector=detector,
                                  salt=salt, rank=stored_rank if stored_rank is not None else rank)
            identity = {"kind": maker.kind, "recogniser": maker.fr_id, "model_id": maker.model_id,
                        "model_digest": maker.model_digest, "template": maker.version, "salt_id": salt_id(salt)}
            if "kind" in meta:
                for field_name in IDENTITY_FIELDS:
                    if meta.get(field_name) != identity[field_name]:
                        maker.close()
                        raise mismatch(store, field_name, meta.get(field_name), identity[field_name])
            else:
                create_identity(store, identity, maker, model or DEFAULT_MODEL)
            return cls(store, maker)
        except BaseException:
            store.close()
            raise

    # -- operations ----------------------------------------------------------------------------
    def enrol(self, name: str, images: Sequence[np.ndarray], *, source: str = "cli",
              labels: Sequence[str] | None = None) -> Enrolment:
        """Add one template per photo of ``name`` (each ``(H, W, 3) uint8 BGR`` with exactly one
        face); all of them or none (one transaction). ``labels`` name the photos in errors."""
        maker = self._maker("enrol")
        check_name(name)
        if not images:
            raise TerminalError("enrolment needs at least one photo")
        labels = list(labels) if labels is not None else [f"photo {i + 1}" for i in range(len(images))]
        vectors, protected = [], None
        try:
            for image, label in zip(images, labels):
                image = check_image(image, label)
                template = maker.template(image, maker.enrolment_face(image, label), display=protected is None)
                vectors.append(template.vector)
                if protected is None:
                    protected = template.protected_face
        except AnonymixerError as exc:
            self._audit("enrol", "refused", source, subject=name, detail=str(exc))
            raise
        assert protected is not None
        png = face_png(protected)
        with self.store.write() as conn:
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            check_key(self.store, meta, str(self.fingerprint))
            if not meta.get("active_key"):
                Store.set_meta(conn, active_key=self.fingerprint)
            Store.add_templates(conn, name, vectors, png, {"kind": maker.kind, "model_id": maker.model_id,
                                                           "model_digest": maker.model_digest,
                                                           "recogniser": maker.fr_id}, str(self.fingerprint))
            Store.audit_in(conn, AuditEntry("enrol", "ok", name, fingerprint=self.fingerprint, source=source,
                                            detail=f"{len(vectors)} template(s)"))
        return Enrolment(name, len(vectors), png)

    def verify(self, name: str, image: np.ndarray, *, source: str = "cli") -> Decision:
        """Is the largest face of ``image`` the enrolled ``name``? ``UnknownSubject`` if no one of
        that name is enrolled; a subject whose templates were all revoked is rejected."""
        maker = self._maker("verify")
        check_name(name)
        if not self.store.subject_exists(name):
            self._audit("verify", "unknown subject", source, subject=name)
            raise UnknownSubject(f"no subject named {printable(name)!r} is enrolled in {self.store.label}")
        threshold = self.threshold()
        vector = self._probe(image, "verify", source, name)
        gallery = self.store.gallery(str(self.fingerprint))
        mine = gallery.vectors[gallery.names == name] if len(gallery.names) else gallery.vectors
        score = float(np.max(mine @ vector)) if len(mine) else -1.0
        accepted = bool(len(mine) and score >= threshold)
        self._audit("verify", "accepted" if accepted else "rejected", source, subject=name, score=score,
                    threshold=threshold, detail=None if len(mine) else "no active template")
        return Decision(accepted, score, threshold, name, maker.kind, str(self.fingerprint), [])

    def identify(self, image: np.ndarray, *, source: str = "cli") -> Decision:
        """Who, among the enrolled, is the largest face of ``image``? ``name`` None when no one's
        score reaches the threshold."""
        maker = self._maker("identify")
        threshold = self.threshold()
        vector = self._probe(image, "identify", source, None)
        names, best = self.store.gallery(str(self.fingerprint)).best_per_subject(vector)
        top = np.argpartition(-best, CANDIDATES)[:CANDIDATES] if len(best) > CANDIDATES else np.arange(len(best))
        order = top[np.argsort(-best[top])]
        candidates = [(str(names[i]), float(best[i])) for i in order]
        score = candidates[0][1] if candidates else -1.0
        accepted = bool(candidates) and score >= threshold
        name = candidates[0][0] if accepted else None
        self._audit("identify", "accepted" if accepted else "rejected", source, subject=name, score=score,
                    threshold=threshold)
        return Decision(accepted, score, threshold, name, maker.kind, str(self.fingerprint), candidates)

    def revoke(self, fingerprint: str, *, source: str = "cli") -> int:
        """Retire every template under key ``fingerprint`` (they never match again) and refuse that
        key from now on; returns how many templates were retired."""
        if not isinstance(fingerprint, str) or not FINGERPRINT.fullmatch(fingerprint):
            raise TerminalError(f"{printable(str(fingerprint))!r} is not a key fingerprint (xxxx-xxxx-xxxx-xxxx); "
                                "give the old key file or its fingerprint")
        with self.store.write() as conn:
            count = Store.revoke_in(conn, fingerprint)
            active = conn.execute("SELECT value FROM meta WHERE name = 'active_key'").fetchone()
            if active is not None and active[0] == fingerprint:
                Store.set_meta(conn, active_key=None)
            Store.audit_in(conn, AuditEntry("revoke", "ok", None, fingerprint=fingerprint, source=source,
                                            detail=f"{count} template(s) retired"))
        return count

    def forget(self, name: str, *, source: str = "cli") -> int:
        """Erase subject ``name``: templates, protected face, and the name in earlier audit rows."""
        check_name(name)
        with self.store.write() as conn:
            count = Store.forget_in(conn, name)
            if count is not None:
                Store.audit_in(conn, AuditEntry("forget", "ok", FORGOTTEN, fingerprint=self.fingerprint,
                                                source=source, detail=f"{count} template(s) erased"))
        if count is None:
            self._audit("forget", "unknown subject", source, subject=name)
            raise UnknownSubject(f"no subject named {printable(name)!r} is enrolled in {self.store.label}")
        self.store.checkpoint()
        return count

    def subjects(self) -> list[Subject]:
        """Every subject by name, with its active templates under the store's active key."""
        active = self.fingerprint or self.store.meta().get("active_key")
        return [Subject(name, int(count), enrolled_at, face) for name, count, enrolled_at, face
                in self.store.subjects(active)]

    def audit(self, limit: int = 100) -> list[AuditRow]:
        """The newest ``limit`` audit rows, newest first."""
        return [AuditRow(time=r[0], action=r[1], subject=r[2], outcome=r[3], score=r[4], threshold=r[5],
                         fingerprint=r[6], source=r[7], detail=r[8]) for r in self.store.audit_rows(limit)]

    def record(self, action: str, outcome: str, *, source: str, detail: str | None = None) -> None:
        """An audit row for an event outside these operations (e.g. a refused HTTP token)."""
        self._audit(action, outcome, source, detail=detail)

    def threshold(self) -> float:
        """The store's threshold; ``TerminalError`` saying how to set one if there is none."""
        value = self.store.meta().get("threshold")
        if value is None:
            raise TerminalError(f"store {self.store.label} has no threshold: no measured default exists for its "
                                "templates; run: anonymixer terminal calibrate --db DB --key KEY --fmr 1e-3 "
                                "--synthetic 2000")
        return float(value)

    def info(self) -> dict[str, str]:
        """The store's public settings (kind, recogniser, model, template, active key, threshold)."""
        return {k: v for k, v in self.store.meta().items() if k != "generation"}

    def calibrate(self, fmr: float = DEFAULT_FMR, *, people: Mapping[str, Sequence[np.ndarray]] | None = None,
                  synthetic: int = 0, enrolled: bool = True, seed: int = 0, source: str = "cli") -> Calibration:
        """Set the threshold for ``fmr`` from impostor scores: enrolled subjects' active templates,
        ``people`` (name -> photos, largest face each) and ``synthetic`` generated identities."""
        maker = self._maker("calibrate")
        vectors: list[np.ndarray] = []
        labels: list[str] = []
        sources = []
        if enrolled:
            gallery = self.store.gallery(str(self.fingerprint))
            vectors += list(gallery.vectors)
            labels += [f"enrolled:{n}" for n in gallery.names]
            sources.append(f"{len(set(gallery.names))} enrolled subject(s)")
        if people:
            count = 0
            for person, photos in people.items():
                for image in photos:
                    faces = maker.faces(image)
                    if faces:
                        vectors.append(maker.template(image, faces[0]).vector)
                        labels.append(f"enrolled:{person}")
                        count += 1
            sources.append(f"{count} photo(s) of {len(people)} people")
        if synthetic:
            vectors += list(maker.synthetic_templates(synthetic, seed))
            labels += [f"synthetic:{i}" for i in range(synthetic)]
            sources.append(f"{synthetic} synthetic identities")
        scores = impostor_scores(np.stack(vectors), np.array(labels)) if len(vectors) > 1 else np.zeros(0)
        result = calibrate(scores, fmr, ", ".join(sources))
        with self.store.write() as conn:
            Store.set_meta(conn, threshold=repr(result.threshold),
                           threshold_source=f"calibrate: {result.describe()}")
            Store.audit_in(conn, AuditEntry("calibrate", "ok", None, threshold=result.threshold,
                                            fingerprint=self.fingerprint, source=source, detail=result.describe()))
        return result

    # -- plumbing ------------------------------------------------------------------------------
    def _maker(self, action: str) -> TemplateMaker:
        if self.maker is None:
            raise TerminalError(f"{action} needs the site key (--key KEY)")
        return self.maker

    def _probe(self, image: np.ndarray, action: str, source: str, name: str | None) -> np.ndarray:
        maker = self._maker(action)
        try:
            image = check_image(image, "probe")
            return maker.template(image, maker.probe_face(image, "probe")).vector
        except AnonymixerError as exc:
            self._audit(action, "refused", source, subject=name, detail=str(exc))
            raise

    def _audit(self, action: str, outcome: str, source: str, *, subject: str | None = None,
               score: float | None = None, threshold: float | None = None, detail: str | None = None) -> None:
        self.store.audit(AuditEntry(action, outcome, subject, score, threshold, self.fingerprint, source, detail))

    def close(self) -> None:
        if self.maker is not None:
            self.maker.close()
        self.store.close()

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_key(store: Store, meta: Mapping[str, str], fingerprint: str) -> None:
    """Refuse a revoked key, and a key other than the store's active one."""
    revoked = store.revoked_at(fingerprint)
    if revoked is not None:
        raise StoreMismatch(f"store {store.label}: key {fingerprint} was revoked at {revoked}; "
                            "enrol under a new key (anonymixer keygen)")
    active = meta.get("active_key")
    if active and active != fingerprint:
        raise StoreMismatch(f"store {store.label} holds templates under key {active}, not under this key "
                            f"{fingerprint}; give that key, or revoke it first (terminal revoke --revoked {active})")


def mismatch(store: Store, field_name: str, stored: str | None, given: str | None) -> StoreMismatch:
    label = field_name.replace("_", " ")
    return StoreMismatch(f"store {store.label} was made with {label} {stored}, not {given}; "
                         f"open it with its own {label} or use another --db")


def create_identity(store: Store, identity: dict[str, str], maker: TemplateMaker, model_spec: str) -> None:
    """A new store's identity and its starting threshold (the measured default, if any)."""
    default = measured_threshold(maker.kind, maker.fr_id, maker.model_id, maker.version)
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM meta WHERE name = 'kind'").fetchone() is not None:
            return   # another process created it first; the next open compares
        Store.set_meta(conn, **identity, model_spec=model_spec,
                       rank=None if maker.rank is None else str(maker.rank))
        if default is not None:
            Store.set_meta(conn, threshold=repr(default.threshold),
                           threshold_source=f"measured default at FMR {default.fmr:g} from {default.impostor_pairs} "
                                            f"impostor pairs (benchmarks/terminal_thresholds.py)")
