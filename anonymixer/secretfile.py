"""Small secret files (key files, the service's bearer token): how they are read.

A path is opened without blocking (a FIFO must not wait for a writer), must be a regular file, is
read at most ``max_bytes + 1`` bytes (a huge or growing file is never read whole), and every
problem is one line naming the file and never quoting its contents. What the contents must be,
and what a loose mode means (a warning for a key file, a refusal for a token), is the caller's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from .errors import AnonymixerError


def read_secret_file(path: str, fail: Callable[[str], AnonymixerError], max_bytes: int, what: str,
                     missing_hint: str) -> tuple[bytes, int]:
    """``(contents, st_mode)`` of the small regular file ``path``; else ``fail(problem)`` is raised,
    ``what`` naming the kind of file ("a key file") and ``missing_hint`` what to do when it does
    not exist."""
    if os.path.isdir(path):
        raise fail(f"is a directory, not {what}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise fail(f"does not exist; {missing_hint}") from None
    except PermissionError:
        raise fail("cannot be read (permission denied); check its owner and mode") from None
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise fail(f"is not a regular file (a device, FIFO or socket); {what} is a small file")
        try:
            raw = f.read(max_bytes + 1)
        except OSError as exc:
            raise fail(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > max_bytes:
        raise fail(f"is larger than {max_bytes} bytes, so it is not {what}")
    return raw, mode
