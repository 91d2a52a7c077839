"""The template store: one SQLite file per site (the standard library's ``sqlite3``).

WAL (one writer, many readers, across processes), foreign keys, ``secure_delete`` (erased rows
are overwritten, not left in free pages), ``synchronous=FULL``, a schema version
(``PRAGMA user_version``) with ordered migrations, and every change in one transaction: a process
killed in the middle of an enrolment leaves the store as it was before it.

It holds protected templates, the protected face shown for a subject, thresholds and an audit
trail; never an original image, an unprotected embedding or a key's secret (``meta`` holds the
active key's public fingerprint only).

Tables (schema 1)::

    meta(name PRIMARY KEY, value)                  kind, model_id, model_digest, recogniser, template,
                                                   salt_id, active_key, threshold, threshold_source,
                                                   generation (bumped by every template change)
    subjects(id, name UNIQUE, enrolled_at, protected_face PNG)
    templates(id, subject_id -> subjects ON DELETE CASCADE, kind, model_id, model_digest,
              recogniser, key_fingerprint, vector float32 LE, created_at, revoked_at)
    revoked_keys(fingerprint PRIMARY KEY, revoked_at)
    audit(id, time, action, subject, outcome, score, threshold, key_fingerprint, source, detail)
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import TerminalError, printable

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
# Migration i takes a store from schema version i to i + 1; statements run in one transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE subjects (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, enrolled_at TEXT NOT NULL, "
        "protected_face BLOB)",
        "CREATE TABLE templates (id INTEGER PRIMARY KEY, "
        "subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE, kind TEXT NOT NULL, "
        "model_id TEXT NOT NULL, model_digest TEXT NOT NULL, recogniser TEXT NOT NULL, "
        "key_fingerprint TEXT NOT NULL, vector BLOB NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)",
        "CREATE INDEX templates_by_key ON templates(key_fingerprint, revoked_at)",
        "CREATE INDEX templates_by_subject ON templates(subject_id)",
        "CREATE TABLE revoked_keys (fingerprint TEXT PRIMARY KEY, revoked_at TEXT NOT NULL)",
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, time TEXT NOT NULL, action TEXT NOT NULL, subject TEXT, "
        "outcome TEXT NOT NULL, score REAL, threshold REAL, key_fingerprint TEXT, source TEXT, detail TEXT)",
        "INSERT INTO meta VALUES ('generation', '0')",
    ),
)
FORGOTTEN = "(forgotten)"   # what earlier audit rows say instead of an erased subject's name


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-12-06T02:40:00.123Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class AuditEntry:
    action: str
    outcome: str
    subject: str | None = None
    score: float | None = None
    threshold: float | None = None
    fingerprint: str | None = None
    source: str | None = None
    detail: str | None = None


class Gallery:
    """Active templates under one key: ``names (N,)`` object array of subject names and
    ``vectors (N, d) float32`` unit rows (row i belongs to ``names[i]``)."""

    def __init__(self, names: np.ndarray, vectors: np.ndarray) -> None:
        self.names, self.vectors = names, vectors
        self.subjects = np.zeros(0, dtype=object)
        if len(names):
            # Rows grouped by subject once, so that a probe's best score per subject is one
            # reduceat over the scores (np.maximum.at is ~100x slower on 10,000 rows).
            self.subjects, subject_of_row = np.unique(names.astype(str), return_inverse=True)
            order = np.argsort(subject_of_row, kind="stable")
            self.vectors = np.ascontiguousarray(vectors[order])
            self.names = names[order]
            self._starts = np.flatnonzero(np.r_[True, np.diff(subject_of_row[order]) != 0])

    def best_per_subject(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(subjects (M,), best cosine of each subject's templates with vector (M,) float32)``."""
        if not len(self.names):
            return self.subjects, np.zeros(0, np.float32)
        # einsum, not the BLAS: a gemv of this size would wake OpenBLAS's thread pool, whose threads
        # then spin beside the recogniser's on the same cores (identify's p99, 2 cores: 12 ms match).
        scores = np.einsum("nd,d->n", self.vectors, np.asarray(vector, np.float32))
        return self.subjects, np.maximum.reduceat(scores, self._starts)


class Store:
    """One SQLite store, one connection per thread (safe to share between threads)."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = Path(path)
        self.label = printable(str(self.path))
        if not self.path.exists():
            if not create:
                raise TerminalError(f"store {self.label} does not exist; enrol someone first to create it")
            if not self.path.parent.is_dir():
                raise TerminalError(f"store {self.label}: folder {printable(str(self.path.parent))} does not exist")
            try:  # created 0600: templates are biometric data even when protected
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise TerminalError(f"store {self.label}: cannot create ({exc.strerror})") from None
        elif self.path.is_dir():
            raise TerminalError(f"store {self.label} is a folder, not a store file")
        self._local = threading.local()
        self._cache: tuple[str, str, Gallery] | None = None
        self._cache_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._migrate()

    # -- connections -------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit, see ``write``)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # check_same_thread off only so that close() can close every thread's connection;
                # each connection is used by the thread that opened it and no other.
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA secure_delete = ON")
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.DatabaseError as exc:
                raise TerminalError(f"store {self.label}: not a template store ({exc})") from None
            self._local.conn = conn
            with self._cache_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the writer lock is taken up front, so two
        writers queue instead of failing halfway); rolled back on any exception."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise TerminalError(f"store {self.label}: cannot write ({exc})") from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        conn = self.connection()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise TerminalError(f"store {self.label}: not a template store ({exc})") from None
        if version > SCHEMA_VERSION:
            raise TerminalError(f"store {self.label} has schema version {version}; this anonymixer reads up to "
                                f"{SCHEMA_VERSION}: upgrade anonymixer")
        if version == SCHEMA_VERSION:
            return
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]   # another process may have won
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def checkpoint(self) -> None:
        """Fold the WAL into the store file and truncate it, so that erased rows (overwritten there
        by ``secure_delete``) do not linger in the WAL; best effort while readers hold old pages."""
        self.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close every thread's connection (call when no thread uses the store any more)."""
        with self._cache_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    # -- meta ----------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.connection().execute("SELECT name, value FROM meta").fetchall())

    @staticmethod
    def set_meta(conn: sqlite3.Connection, **values: str | None) -> None:
        """Inside ``write``: set (or, with ``None``, delete) meta values."""
        for name, value in values.items():
            if value is None:
                conn.execute("DELETE FROM meta WHERE name = ?", (name,))
            else:
                conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                             (name, value))

    @staticmethod
    def bump_generation(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation'")

    # -- audit ---------------------------------------------------------------------------------
    @staticmethod
    def audit_in(conn: sqlite3.Connection, entry: AuditEntry) -> None:
        conn.execute("INSERT INTO audit (time, action, subject, outcome, score, threshold, key_fingerprint, source, "
                     "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (utc_now(), entry.action, entry.subject, entry.outcome, entry.score, entry.threshold,
                      entry.fingerprint, entry.source, entry.detail))

    def audit(self, entry: AuditEntry) -> None:
        """One audit row, in a transaction of its own."""
        with self.write() as conn:
            self.audit_in(conn, entry)

    def audit_rows(self, limit: int) -> list[tuple]:
        """Newest first: ``(time, action, subject, outcome, score, threshold, key_fingerprint, source, detail)``."""
        return self.connection().execute(
            "SELECT time, action, subject, outcome, score, threshold, key_fingerprint, source, detail FROM audit "
            "ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()

    # -- subjects and templates ----------------------------------------------------------------
    @staticmethod
    def add_templates(conn: sqlite3.Connection, name: str, vectors: Sequence[np.ndarray], protected_png: bytes | None,
                      columns: dict[str, str], fingerprint: str) -> None:
        """Inside ``write``: the subject (created if new) and its templates."""
        now = utc_now()
        conn.execute("INSERT INTO subjects (name, enrolled_at, protected_face) VALUES (?, ?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET protected_face = COALESCE(excluded.protected_face, protected_face)",
                     (name, now, protected_png))
        subject_id = conn.execute("SELECT id FROM subjects WHERE name = ?", (name,)).fetchone()[0]
        for vector in vectors:
            conn.execute("INSERT INTO templates (subject_id, kind, model_id, model_digest, recogniser, key_fingerprint, "
                         "vector, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (subject_id, columns["kind"], columns["model_id"], columns["model_digest"],
                          columns["recogniser"], fingerprint, np.asarray(vector, "<f4").tobytes(), now))
        Store.bump_generation(conn)

    def subject_exists(self, name: str) -> bool:
        return self.connection().execute("SELECT 1 FROM subjects WHERE name = ?", (name,)).fetchone() is not None

    def gallery(self, fingerprint: str) -> Gallery:
        """Active (unrevoked) templates under ``fingerprint``; cached until the store changes."""
        conn = self.connection()
        generation = conn.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()[0]
        with self._cache_lock:
            if self._cache is not None and self._cache[:2] == (fingerprint, generation):
                return self._cache[2]
        rows = conn.execute("SELECT s.name, t.vector FROM templates t JOIN subjects s ON s.id = t.subject_id "
                            "WHERE t.key_fingerprint = ? AND t.revoked_at IS NULL ORDER BY t.id",
                            (fingerprint,)).fetchall()
        names = np.array([r[0] for r in rows], dtype=object)
        vectors = (np.stack([np.frombuffer(r[1], "<f4") for r in rows]).astype(np.float32) if rows
                   else np.zeros((0, 0), np.float32))
        gallery = Gallery(names, vectors)
        with self._cache_lock:
            self._cache = (fingerprint, generation, gallery)
        return gallery

    def subjects(self, fingerprint: str | None) -> list[tuple[str, int, str, bytes | None]]:
        """``(name, active templates under fingerprint, enrolled_at, protected_face)`` by name."""
        return self.connection().execute(
            "SELECT s.name, COUNT(t.id), s.enrolled_at, s.protected_face FROM subjects s "
            "LEFT JOIN templates t ON t.subject_id = s.id AND t.revoked_at IS NULL AND t.key_fingerprint = ? "
            "GROUP BY s.id ORDER BY s.name", (fingerprint or "",)).fetchall()

    @staticmethod
    def revoke_in(conn: sqlite3.Connection, fingerprint: str) -> int:
        """Inside ``write``: retire every template under ``fingerprint`` and list the key as revoked."""
        now = utc_now()
        count = conn.execute("UPDATE templates SET revoked_at = ? WHERE key_fingerprint = ? AND revoked_at IS NULL",
                             (now, fingerprint)).rowcount
        conn.execute("INSERT OR IGNORE INTO revoked_keys VALUES (?, ?)", (fingerprint, now))
        Store.bump_generation(conn)
        return int(count)

    def revoked_at(self, fingerprint: str) -> str | None:
        row = self.connection().execute("SELECT revoked_at FROM revoked_keys WHERE fingerprint = ?",
                                        (fingerprint,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def forget_in(conn: sqlite3.Connection, name: str) -> int | None:
        """Inside ``write``: erase a subject, its templates and its protected face, and its name from
        earlier audit rows; ``None`` if there is no such subject."""
        row = conn.execute("SELECT id FROM subjects WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        count = conn.execute("SELECT COUNT(*) FROM templates WHERE subject_id = ?", (row[0],)).fetchone()[0]
        conn.execute("DELETE FROM subjects WHERE id = ?", (row[0],))   # templates go by ON DELETE CASCADE
        conn.execute("UPDATE audit SET subject = ? WHERE subject = ?", (FORGOTTEN, name))
        Store.bump_generation(conn)
        return int(count)
