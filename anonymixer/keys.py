"""Keys: the secret that picks a protected identity, its public fingerprint, and ``secret -> z``.

A key is 32 random bytes from :func:`secrets.token_bytes`. :class:`Key` keeps them private:
``repr``/``str``, log lines and error messages show only the *fingerprint*, a one-way public id
(``SHA-256(b"anonymixer/fingerprint/v1\\0" + secret)``, first 16 hex chars as ``xxxx-xxxx-xxxx-xxxx``)
that is safe for logs and revocation lists. Revoking a key means generating a new one.

Key file (UTF-8 JSON, one object, mode 0600)::

    {"format": "anonymixer-key", "version": 1, "secret": "<64 lowercase hex>", "fingerprint": "<fp>"}

``secret -> z`` (once per key, not per frame; ``z`` then goes through mapping + truncation)::

    seed = scrypt(secret, salt, n=2**14, r=8, p=1, dklen=32)      # ~16 MiB, tens of ms
    bits = Philox(key=int(seed[:16], little), counter=int(seed[16:], little))
    z    = Generator(bits).standard_normal(dim, float64).astype(float32)

The *salt* is per deployment (explicit value > ``$ANONYMIXER_SALT`` > :data:`DEFAULT_SALT`): the
same key under two salts gives unrelated identities, so identities cannot be linked across
deployments. scrypt makes guessing a low-entropy secret from a leaked ``z`` expensive.

Why ``z`` is bit-identical on every platform: scrypt is specified exactly (RFC 7914) and only
does integer work; Philox-4x64 is integer arithmetic whose raw stream numpy keeps stable; numpy's
ziggurat normal sampler turns it into doubles by table lookups, multiplies and compares in its fast
path (~99% of draws); the rare wedge/tail draws call libm ``exp``/``log1p``, whose last-ulp
differences are erased by the float32 cast with overwhelming probability. numpy does not promise
``Generator`` streams across its *versions* (NEP 19); the golden values in ``tests/test_keys.py``
catch any change of KDF, PRNG, sampler or dtype. Nothing here caches secrets or derived values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile

import numpy as np

from anonymixer.errors import AnonymixerError, KeyFileError

__all__ = ["DEFAULT_SALT", "Key", "derive_z", "generate_key", "load_key", "resolve_salt", "save_key"]

logger = logging.getLogger("anonymixer.keys")

SECRET_BYTES = 32
FINGERPRINT_PREFIX = b"anonymixer/fingerprint/v1\0"
DEFAULT_SALT = b"anonymixer/v1/default-deployment-salt"
SALT_ENV_VAR = "ANONYMIXER_SALT"
# scrypt cost: memory = 128 * r * n bytes = 16 MiB. Changing any of these changes every identity.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 2**20
KEY_FILE_FORMAT = "anonymixer-key"
KEY_FILE_VERSION = 1
_SECRET_HEX = re.compile(r"[0-9a-f]{64}")


class Key:
    """A secret key. Only its :attr:`fingerprint` is ever shown; the 32 secret bytes stay private."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_BYTES:
            raise ValueError(f"a key secret must be {SECRET_BYTES} bytes; use generate_key() to make one")
        self._secret = bytes(secret)

    @property
    def fingerprint(self) -> str:
        """Public id, e.g. ``'3f2a-09bc-77d1-e045'``: safe to log and to put on revocation lists."""
        digest = hashlib.sha256(FINGERPRINT_PREFIX + self._secret).hexdigest()[:16]
        return "-".join(digest[i : i + 4] for i in range(0, 16, 4))

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def generate_key() -> Key:
    """A fresh key from the OS's cryptographic random source."""
    return Key(secrets.token_bytes(SECRET_BYTES))


def save_key(key: Key, path: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` as a key file created with mode 0600 (never written, then chmod-ed).

    Without ``overwrite`` the file is created with O_EXCL, so an existing key is never clobbered;
    with it, a 0600 temp file in the same directory is written and then atomically renamed.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise KeyFileError(f"cannot save key file {path}: directory {parent} does not exist; create it first")
    record = {"format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION,
              "secret": key._secret.hex(), "fingerprint": key.fingerprint}
    data = (json.dumps(record, indent=2) + "\n").encode("utf-8")
    try:
        if overwrite:
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=".anonymixer-key-", suffix=".tmp")  # 0600
            _write_all(fd, data, tmp)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        else:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
            try:
                fd = os.open(path, flags, 0o600)
            except FileExistsError:
                raise KeyFileError(f"key file {path} already exists; pass --force (overwrite=True) "
                                   "to replace it, or choose another path") from None
            _write_all(fd, data, path)
    except OSError as exc:
        raise KeyFileError(f"cannot save key file {path}: {exc.strerror or type(exc).__name__}") from exc
    logger.info("saved key %s to %s", key.fingerprint, path)


def _write_all(fd: int, data: bytes, path: str) -> None:
    """Write, fsync and close ``fd``; on failure remove the half-written file at ``path``."""
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise


def load_key(path: str | os.PathLike[str]) -> Key:
    """Read a key file. Raises :class:`KeyFileError` (one line, never the file's contents)."""
    path = os.fspath(path)

    def fail(problem: str) -> KeyFileError:
        return KeyFileError(f"key file {path}: {problem}")

    if os.path.isdir(path):
        raise fail("is a directory, not a key file")
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read()
    except FileNotFoundError:
        raise fail("does not exist; check the path or create a key first") from None
    except PermissionError:
        raise fail("cannot be read (permission denied); check its owner and mode") from None
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if os.name == "posix" and mode & 0o077:
        logger.warning("key file %s is readable by group or others (mode %03o); run: chmod 600 %s",
                       path, mode & 0o777, path)
    if not raw.strip():
        raise fail("is empty; it may have been truncated, restore it from a backup")
    # `from None` everywhere below: decoder exceptions can quote bytes of the file.
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise fail("is not a JSON key file (corrupt, or not a key file)") from None
    if not isinstance(record, dict) or record.get("format") != KEY_FILE_FORMAT:
        raise fail(f"is not an anonymixer key file (missing or wrong \"format\", expected {KEY_FILE_FORMAT!r})")
    version = record.get("version")
    if type(version) is not int or version != KEY_FILE_VERSION:
        shown = f" {version}" if type(version) is int else ""
        raise fail(f"has unsupported version{shown}; this anonymixer reads version {KEY_FILE_VERSION}")
    secret_hex = record.get("secret")
    if not isinstance(secret_hex, str) or not _SECRET_HEX.fullmatch(secret_hex):
        raise fail("\"secret\" must be 64 lowercase hexadecimal characters; the file is corrupt")
    key = Key(bytes.fromhex(secret_hex))
    if "fingerprint" in record and record["fingerprint"] != key.fingerprint:
        raise fail("\"fingerprint\" does not match the secret; the file is corrupt or was edited, "
                   "restore it from a backup")
    logger.debug("loaded key %s from %s", key.fingerprint, path)
    return key


def resolve_salt(value: str | bytes | None = None) -> bytes:
    """The deployment salt: ``value`` if given, else ``$ANONYMIXER_SALT``, else :data:`DEFAULT_SALT`.

    A ``str`` is UTF-8 encoded. An empty salt (given or from the environment) is an error.
    """
    source = "the salt"
    if value is None:
        value = os.environ.get(SALT_ENV_VAR)
        source = f"${SALT_ENV_VAR}"
        if value is None:
            return DEFAULT_SALT
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"salt must be str or bytes, not {type(value).__name__}")
    if not value:
        raise AnonymixerError(f"{source} is empty; set a non-empty deployment salt or leave it unset "
                              "to use the default")
    return bytes(value)


def derive_z(key: Key, salt: bytes | str | None = None, dim: int = 512) -> np.ndarray:
    """The key's latent ``z``: ``(dim,) float32``, ~N(0, 1), bit-identical for the same key and salt."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    seed = hashlib.scrypt(key._secret, salt=resolve_salt(salt), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          maxmem=SCRYPT_MAXMEM, dklen=32)
    bits = np.random.Philox(key=int.from_bytes(seed[:16], "little"),
                            counter=int.from_bytes(seed[16:], "little"))
    z = np.random.Generator(bits).standard_normal(dim, dtype=np.float64).astype(np.float32)
    logger.debug("derived z (%d,) for key %s", dim, key.fingerprint)
    return z
