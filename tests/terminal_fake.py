"""TEMPORARY: a Terminal that follows the contract, for developing the service before the real one lands."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from anonymixer.terminal import AuditRow, Decision, Enrolment, Subject, UnknownSubject


def _vector(image):
    small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (16, 16)).astype(np.float32)
    small = (small + small[:, ::-1]).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-9)


class FakeTerminal:
    threshold = 0.9
    fingerprint = "0000-1111-2222-3333"

    def __init__(self):
        self._lock = threading.Lock()
        self._subjects = {}
        self._audit = []

    def _log(self, action, outcome, subject=None, score=None, detail=None, source="cli"):
        self._audit.append(AuditRow(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), action, subject, outcome,
                                    score, self.threshold, self.fingerprint, detail))

    def enrol(self, name, images, *, source="cli"):
        with self._lock:
            self._subjects[name] = [_vector(i) for i in images]
            self._log("enrol", "enrolled", name, source=source)
            return Enrolment(name, len(images), cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())

    def verify(self, name, image, *, source="cli"):
        with self._lock:
            if name not in self._subjects:
                self._log("verify", "unknown subject", name, source=source)
                raise UnknownSubject(f"no subject named {name!r}; enrol them first")
            score = max(float(v @ _vector(image)) for v in self._subjects[name])
            accepted = score >= self.threshold
            self._log("verify", "accepted" if accepted else "rejected", name, score, source=source)
            return Decision(accepted, score, self.threshold, name, "embedding", self.fingerprint, [])

    def identify(self, image, *, source="cli"):
        with self._lock:
            probe = _vector(image)
            ranked = sorted(((n, max(float(v @ probe) for v in vs)) for n, vs in self._subjects.items()),
                            key=lambda c: -c[1])
            best = ranked[0] if ranked else (None, -1.0)
            accepted = best[1] >= self.threshold
            self._log("identify", "accepted" if accepted else "rejected", best[0] if accepted else None, best[1])
            return Decision(accepted, best[1], self.threshold, best[0] if accepted else None, "embedding",
                            self.fingerprint, ranked[:5])

    def revoke(self, fingerprint, *, source="cli"):
        with self._lock:
            n = sum(len(v) for v in self._subjects.values()) if fingerprint == self.fingerprint else 0
            self._log("revoke", "revoked", detail=fingerprint)
            return n

    def forget(self, name, *, source="cli"):
        with self._lock:
            if name not in self._subjects:
                raise UnknownSubject(f"no subject named {name!r}")
            self._log("forget", "erased", name)
            return len(self._subjects.pop(name))

    def subjects(self):
        with self._lock:
            return [Subject(n, len(v), "2026-12-06T00:00:00Z", cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()) for n, v in self._subjects.items()]

    def audit(self, limit=100):
        with self._lock:
            return list(reversed(self._audit))[:limit]

    def record(self, action, outcome, *, source, detail=None):
        with self._lock:
            self._log(action, outcome, detail=detail, source=source)

    def close(self):
        pass
