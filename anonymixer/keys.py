"""Keys: the secret that picks a protected identity, its public fingerprint, and ``secret -> normals``.

A key is 32 random bytes from :func:`secrets.token_bytes`. :class:`Key` keeps them private:
``repr``/``str``, log lines and error messages show only the *fingerprint*, a one-way public id
(``SHA-256(b"anonymixer/fingerprint/v1\\0" + secret)``, first 16 hex chars as ``xxxx-xxxx-xxxx-xxxx``)
that is safe for logs and revocation lists. Revoking a key means generating a new one.

Key file (UTF-8 JSON, one object, mode 0600)::

    {"format": "anonymixer-key", "version": 1, "secret": "<64 lowercase hex>", "fingerprint": "<fp>"}

Key material (once per key, not per frame), derivation ``anonymixer/keys/v2`` (:data:`KEY_DERIVATION`)::

    seed     = scrypt(secret, salt, n=2**14, r=8, p=1, dklen=32)       # ~16 MiB, tens of ms
    stream_s = SHAKE-256(b"anonymixer/v2/" + s + b"\\0" + seed)         # s: "z", "rotation", ...
    word_i   = little-endian uint64 from bytes 8i .. 8i+7 of stream_s
    u_i      = ((word_i >> 12) + 0.5) * 2**-52                          # in (0, 1), never 0 or 1
    x_i      = Phi^-1(u_i)  (Wichura's AS241, float64)                  # ~N(0, 1)

``z = float32(x_0 .. x_{dim-1})`` of stream ``"z"``; the mixer's rotation and projection take
their own streams (``anonymixer.keymaterial``), so no two uses ever share a normal.

The *salt* is per deployment (explicit value > ``$ANONYMIXER_SALT`` > :data:`DEFAULT_SALT`): the
same key under two salts gives unrelated identities, so identities cannot be linked across
deployments. scrypt makes guessing a low-entropy secret from a leaked ``z`` expensive.

Why the normals are bit-identical on every platform and every library version: scrypt (RFC 7914)
and SHAKE-256 (FIPS 202) are specified exactly and do integer work only; ``u_i`` is an exact
conversion (``2k + 1 < 2**53`` fits a double exactly, and the set of ``u`` is symmetric about 1/2,
so ``1 - u`` is exact too; |x| <= 8.21). We do not use Box-Muller: it needs ``log``, ``cos`` and
``sin``, which IEEE 754 does not require to be correctly rounded, and libms do differ in the last
ulp (glibc, musl, macOS, MSVC). AS241 is a ratio of two degree-7 polynomials, evaluated here with
``+ - * /`` only, each its own Python operation on doubles (so correctly rounded, never fused into
an FMA), plus ``math.sqrt`` (correctly rounded by IEEE 754) and, in the tails (|u - 0.5| > 0.425,
15% of draws), ``log``, which we compute ourselves from the same operations: ``math.frexp`` (exact)
splits off the exponent and a fixed 12-term ``atanh`` series gives the log of the mantissa. So
every step is a correctly rounded IEEE operation in a fixed order: the same bits on any IEEE-754
double platform (x87 80-bit builds excepted, which CPython no longer supports), with no numpy
random ``Generator`` anywhere (numpy does not promise its streams across versions, NEP 19). The
golden values in ``tests/test_keys.py`` pin KDF, XOF, sampler and dtype. Nothing here caches
secrets or derived values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import struct
from pathlib import Path

import numpy as np

from anonymixer.atomic import write_bytes
from anonymixer.errors import AnonymixerError, KeyFileError, OutputError
from anonymixer.secretfile import read_secret_file

__all__ = ["DEFAULT_SALT", "KEY_DERIVATION", "Key", "derive_normals", "derive_z", "key_seed", "stream_normals", "generate_key", "load_key", "resolve_salt", "save_key"]

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
KEY_DERIVATION = "anonymixer/keys/v2"   # the spec in the module docstring and README's Keys section
STREAM_PREFIX = b"anonymixer/v2/"
KEY_FILE_FORMAT = "anonymixer-key"
KEY_FILE_VERSION = 1
MAX_KEY_FILE_BYTES = 4096   # a key file is ~170 bytes; anything much larger is not one
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
    with it, a 0600 temporary file in the same folder is written and renamed (``atomic.write_bytes``).
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
            write_bytes(Path(path), data, mode=0o600)   # 0600 temporary file, fsync, rename
        else:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
            try:
                fd = os.open(path, flags, 0o600)
            except FileExistsError:
                raise KeyFileError(f"key file {path} already exists; pass --force to replace it "
                                   "(first make sure nothing protected under the old key is still needed), or "
                                   "choose another path") from None
            _write_all(fd, data, path)
    except OutputError as exc:
        raise KeyFileError(f"cannot save key file: {exc}") from None
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

    raw, mode = read_secret_file(path, fail, MAX_KEY_FILE_BYTES, "a key file",
                                 "check the path or create a key first")
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


def _log(x: float) -> float:
    """Natural log of ``0 < x < 1`` from correctly rounded operations only (no libm ``log``).

    ``x = m * 2**e`` exactly (``frexp``), ``m`` moved into ``[sqrt(1/2), sqrt(2))``; then
    ``log(m) = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| <= 0.172``: 12 odd terms leave an
    error below 1e-17 relative. Same bits on every IEEE-754 platform.
    """
    m, e = math.frexp(x)
    if m < _SQRT_HALF:
        m, e = m * 2.0, e - 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    series = 0.0
    for k in range(23, 1, -2):
        series = (series + 1.0 / k) * s2
    return e * _LN2 + 2.0 * s * (series + 1.0)


def _normal_quantile(u: float) -> float:
    """``Phi^-1(u)`` for ``0 < u < 1``: Wichura's AS241 (1988), ~1e-16 relative accuracy."""
    q = u - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _poly(_AS241_A, r) / _poly(_AS241_B, r)
    r = math.sqrt(-_log(u if q < 0.0 else 1.0 - u))
    if r <= 5.0:
        x = _poly(_AS241_C, r - 1.6) / _poly(_AS241_D, r - 1.6)
    else:
        x = _poly(_AS241_E, r - 5.0) / _poly(_AS241_F, r - 5.0)
    return -x if q < 0.0 else x


def _poly(coefficients: tuple[float, ...], r: float) -> float:
    """Horner's rule, highest power first, one rounding per operation."""
    value = 0.0
    for c in coefficients:
        value = value * r + c
    return value


# AS241's published coefficients, highest power first (Applied Statistics 37(3), 477-484).
_AS241_A = (2.5090809287301226727e+3, 3.3430575583588128105e+4, 6.7265770927008700853e+4,
            4.5921953931549871457e+4, 1.3731693765509461125e+4, 1.9715909503065514427e+3,
            1.3314166789178437745e+2, 3.3871328727963666080e+0)
_AS241_B = (5.2264952788528545610e+3, 2.8729085735721942674e+4, 3.9307895800092710610e+4,
            2.1213794301586595867e+4, 5.3941960214247511077e+3, 6.8718700749205790830e+2,
            4.2313330701600911252e+1, 1.0)
_AS241_C = (7.74545014278341407640e-4, 2.27238449892691845833e-2, 2.41780725177450611770e-1,
            1.27045825245236838258e+0, 3.64784832476320460504e+0, 5.76949722146069140550e+0,
            4.63033784615654529590e+0, 1.42343711074968357734e+0)
_AS241_D = (1.05075007164441684324e-9, 5.47593808499534494600e-4, 1.51986665636164571966e-2,
            1.48103976427480074590e-1, 6.89767334985100004550e-1, 1.67638483018380384940e+0,
            2.05319162663775882187e+0, 1.0)
_AS241_E = (2.01033439929228813265e-7, 2.71155556874348757815e-5, 1.24266094738807843860e-3,
            2.65321895265761230930e-2, 2.96560571828504891230e-1, 1.78482653991729133580e+0,
            5.46378491116411436990e+0, 6.65790464350110377720e+0)
_AS241_F = (2.04426310338993978564e-15, 1.42151175831644588870e-7, 1.84631831751005468180e-5,
            7.86869131145613259100e-4, 1.48753612908506148525e-2, 1.36929880922735805310e-1,
            5.99832206555887937690e-1, 1.0)
_LN2 = 0.6931471805599453
_SQRT_HALF = 0.7071067811865476


def key_seed(key: Key, salt: bytes | str | None = None) -> bytes:
    """``scrypt(secret, salt)``: the 32 bytes every stream of this key is drawn from. Keep private."""
    return hashlib.scrypt(key._secret, salt=resolve_salt(salt), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          maxmem=SCRYPT_MAXMEM, dklen=32)


def stream_normals(seed: bytes, stream: str, count: int) -> np.ndarray:
    """The first ``count`` normals of stream ``stream`` of ``seed``: ``(count,) float64`` ~N(0, 1).

    Streams are domain-separated by name (``b"anonymixer/v2/" + name + b"\\0"`` prefixes the seed),
    so each use of a key (its code, its rotation, its projection...) has draws of its own.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(f"count must be a positive int, got {count!r}")
    if not stream or "\0" in stream:
        raise ValueError(f"stream name must be non-empty text without NUL, got {stream!r}")
    xof = hashlib.shake_256(STREAM_PREFIX + stream.encode("utf-8") + b"\0" + seed)
    words = struct.unpack(f"<{int(count)}Q", xof.digest(8 * int(count)))
    return np.array([_normal_quantile(((w >> 12) + 0.5) * _TWO_POW_M52) for w in words], dtype=np.float64)


_TWO_POW_M52 = 2.0**-52


def derive_normals(key: Key, salt: bytes | str | None, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Several streams of one key with one scrypt: ``{name: count} -> {name: (count,) float64}``."""
    seed = key_seed(key, salt)
    return {name: stream_normals(seed, name, count) for name, count in counts.items()}


def derive_z(key: Key, salt: bytes | str | None = None, dim: int = 512) -> np.ndarray:
    """The key's latent ``z``: ``(dim,) float32``, ~N(0, 1), bit-identical for the same key and salt."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    z = derive_normals(key, salt, {"z": int(dim)})["z"].astype(np.float32)
    logger.debug("derived z (%d,) for key %s", dim, key.fingerprint)
    return z
