"""Outputs that appear whole or not at all: write a temporary file next to the target, then rename.

A rename within one folder is atomic on POSIX and Windows file systems: a reader (or a later run)
sees the old file or the complete new one, never a half-written one, whatever stops us (a full
disk, SIGTERM, a crash). A file that cannot be completed is removed. The temporary file is hidden
(``.NAME.partial-<8 random hex digits>.SUFFIX``) and keeps the target's suffix, because writers such as
OpenCV's ``VideoWriter`` pick the container from it.

    with replacing(Path("out/clip.mp4")) as temporary:
        write_the_video(temporary)      # any exception (KeyboardInterrupt included) removes it
    # here out/clip.mp4 is the complete new file

    write_json(Path("out/eval.json"), record)           # reports, manifests, sidecars
    with replacing_file(Path("model.pt")) as f:          # writers that take a file object
        torch.save(payload, f)
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

PARTIAL_MARK = ".partial-"


def describe_os_error(exc: OSError) -> str:
    """``No space left on device`` rather than ``[Errno 28] No space left on device: '/x/y'``."""
    return exc.strerror or str(exc) or type(exc).__name__


def prepare_folder(folder: Path) -> None:
    """Create ``folder`` (and parents); ``OutputError`` when a file is in the way or it is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: cannot create the output folder: a file of that name is in the way") from None
    except NotADirectoryError:
        raise OutputError(f"{folder}: cannot create the output folder: part of its path is a file") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({describe_os_error(exc)})") from None


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and create (then remove) one hidden file in it, so that a folder
    that cannot be written (read-only, no permission, a file in the way) fails in one line before
    long work, not after it (``OutputError`` naming the folder)."""
    prepare_folder(folder)
    probe = folder / f".anonymixer{PARTIAL_MARK}{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write into this folder ({describe_os_error(exc)})") from None
    discard(probe)


def new_temporary(path: Path, mode: int = 0o666) -> Path:
    """Create an empty, hidden temporary file in ``path``'s folder, with ``path``'s suffix, and return it.

    ``mode``: its permissions before the umask (0o600 for secrets). ``OutputError`` names ``path``
    when the folder cannot be created or written, or ``path`` is a folder.
    """
    if path.is_dir():
        raise OutputError(f"{path}: the output path is a folder; remove it or choose another --out")
    prepare_folder(path.parent)
    temporary = path.with_name(f".{path.stem}{PARTIAL_MARK}{secrets.token_hex(4)}{path.suffix}")
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({describe_os_error(exc)})") from None
    return temporary


def commit(temporary: Path, path: Path) -> None:
    """Flush ``temporary`` to disk and rename it over ``path`` (replacing an older file atomically)."""
    try:
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({describe_os_error(exc)})") from None
    _sync_folder(path.parent)


def discard(temporary: Path) -> None:
    """Remove a temporary file if it is still there (never raises)."""
    try:
        temporary.unlink()
    except OSError:
        pass


@contextmanager
def replacing(path: Path, mode: int = 0o666) -> Iterator[Path]:
    """Yield a new temporary file next to ``path``; on a clean exit it replaces ``path``,
    on any exception (``KeyboardInterrupt`` included) it is removed and the exception goes on."""
    temporary = new_temporary(path, mode)
    try:
        yield temporary
        commit(temporary, path)
    except BaseException:
        discard(temporary)
        raise


def write_bytes(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` atomically; every write is checked (a full disk is an ``OutputError``)."""
    with replacing(path, mode) as temporary:
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_TRUNC)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({describe_os_error(exc)}); nothing written") from None


def write_text(path: Path, text: str) -> None:
    """``write_bytes`` of ``text`` in UTF-8."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any, indent: int = 1, **options: Any) -> None:
    """``data`` as JSON (``json.dumps`` ``options``) and a newline, written atomically."""
    write_text(path, json.dumps(data, indent=indent, **options) + "\n")


@contextmanager
def replacing_file(path: Path) -> Iterator[IO[bytes]]:
    """``replacing`` with the temporary file open for binary writing (``torch.save``, ``np.savez``);
    a failed write is an ``OutputError`` naming ``path``."""
    with replacing(path) as temporary:
        try:
            with open(temporary, "wb") as f:
                yield f
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({describe_os_error(exc)}); nothing written") from None


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); folders cannot be opened for this on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
