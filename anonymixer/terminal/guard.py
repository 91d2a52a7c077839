"""What the terminal's HTTP service checks before it lets a request near the store or the model:
the bearer token (read from a 0600 file, compared in constant time), the per-client rate of
probes, and the size and shape of an upload (read into memory only: an original photo never
touches the disk)."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, FormParser, parse_options_header

from ..errors import TerminalError
from ..secretfile import read_secret_file

MAX_TOKEN_FILE_BYTES = 4096
MIN_TOKEN_CHARS = 16
FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class TokenFileError(TerminalError):
    """The service's token file is missing, unreadable, too open (not 0600) or not a token."""


class Problem(Exception):
    """A request the service refuses: an HTTP status and one line for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def load_token(path: str | os.PathLike[str]) -> bytes:
    """The bearer token in ``path`` (surrounding whitespace stripped), as bytes.

    The file must be a regular file readable by its owner only (mode 0600 or 0400) holding at
    least ``MIN_TOKEN_CHARS`` visible ASCII characters. Raises ``TokenFileError`` in one line
    that never quotes the file.
    """
    path = os.fspath(path)

    def fail(problem: str) -> TokenFileError:
        return TokenFileError(f"token file {path}: {problem}")

    raw, mode = read_secret_file(path, fail, MAX_TOKEN_FILE_BYTES, "a token file",
                                 "make one: (umask 077; openssl rand -hex 32 > FILE)")
    if mode & 0o077:
        raise fail(f"is open to group or others (mode {mode & 0o777:04o}); run: chmod 600 {path}")
    token = raw.strip()
    if len(token) < MIN_TOKEN_CHARS or not all(0x21 <= b <= 0x7E for b in token):
        raise fail(f"must hold one token of at least {MIN_TOKEN_CHARS} visible ASCII characters "
                   "(no spaces); make one: (umask 077; openssl rand -hex 32 > FILE)")
    return token


class BearerToken:
    """Checks ``Authorization: Bearer <token>`` headers against the service's token."""

    def __init__(self, token: bytes) -> None:
        # Digests of equal length, so that the comparison leaks neither content nor length.
        self._digest = hashlib.sha256(token).digest()

    def problem(self, authorization: str | None) -> str | None:
        """None when the header carries the token, else what was wrong (never the value sent)."""
        if not authorization:
            return "no Authorization header"
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "Authorization is not a bearer token"
        sent = hashlib.sha256(presented.strip().encode("utf-8", "surrogateescape")).digest()
        return None if hmac.compare_digest(sent, self._digest) else "wrong token"


class RateLimit:
    """A token bucket per client: ``burst`` probes at once, then ``rate`` per second.
    ``rate <= 0`` turns the limit off."""

    MAX_CLIENTS = 10_000

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens left, when)
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """0.0 when ``client`` may go on (one token is taken), else seconds until it may."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if len(self._buckets) >= self.MAX_CLIENTS:   # bounded memory: forget the idle ones
                full = [c for c, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst]
                for c in full:
                    del self._buckets[c]
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


@dataclass
class Form:
    """A form's parts in memory: field name -> [(file name or None, bytes)]."""

    parts: dict[str, list[tuple[str | None, bytes]]] = field(default_factory=dict)

    def text(self, name: str) -> str:
        """The one non-empty text field ``name``."""
        values = self.parts.get(name, [])
        if len(values) != 1 or not values[0][1]:
            raise Problem(400, f"send exactly one non-empty form field {name!r}")
        try:
            return values[0][1].decode("utf-8")
        except UnicodeDecodeError:
            raise Problem(400, f"form field {name!r} is not UTF-8 text") from None

    def files(self, name: str, most: int) -> list[tuple[str, bytes]]:
        """The uploads of field ``name`` as (a name to report, bytes); 1 to ``most`` of them."""
        values = self.parts.get(name, [])
        if not 1 <= len(values) <= most:
            many = "one" if most == 1 else f"1 to {most}"
            raise Problem(400, f"send {many} image file(s) in form field {name!r}")
        return [(f"upload {filename!r}" if filename else f"form field {name!r}", data)
                for filename, data in values]


async def read_form(content_type: str | None, content_length: str | None,
                    body: AsyncIterator[bytes], limit: int) -> Form:
    """Parse a multipart or url-encoded body of at most ``limit`` bytes, all in memory.

    Raises ``Problem``: 413 past the limit (from Content-Length before reading, or while
    reading a chunked body), 415 for another content type, 400 for a malformed body.
    """
    too_large = Problem(413, f"request body larger than {limit} bytes")
    if content_length is not None:
        if not content_length.isdigit():
            raise Problem(400, "Content-Length is not a number")
        if int(content_length) > limit:
            raise too_large
    kind, params = parse_options_header(content_type or "")
    if kind not in FORM_TYPES:
        raise Problem(415, "send the form as multipart/form-data")
    form = Form()

    def on_field(part: Field) -> None:
        form.parts.setdefault((part.field_name or b"").decode("utf-8", "replace"), []).append(
            (None, part.value or b""))

    def on_file(part: File) -> None:
        name = (part.field_name or b"").decode("utf-8", "replace")
        filename = (part.file_name or b"").decode("utf-8", "replace") or None
        part.file_object.seek(0)
        form.parts.setdefault(name, []).append((filename, part.file_object.read()))

    # MAX_MEMORY_FILE_SIZE unbounded: the body is bounded above, and a file spooled to disk would
    # leave an original photo in /tmp.
    parser = FormParser(kind.decode("latin-1"), on_field, on_file, boundary=params.get(b"boundary"),
                        config={"MAX_MEMORY_FILE_SIZE": float("inf"), "MAX_FIELDS": 64})
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError):
        raise Problem(400, "the request body is not a well-formed form") from None
    return form
