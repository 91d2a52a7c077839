"""``--json``: one JSON object on stdout, the human lines on stderr.

How a command offers it (``doctor`` in ``cli/bench.py`` is a short example)::

    def register(sub):
        p = sub.add_parser("doctor", help=...)
        add_json_option(p)                          # adds --json
        p.set_defaults(func=cmd_doctor)

    def cmd_doctor(args):
        print("python: 3.12 ...")                   # a human line: stdout, or stderr under --json
        set_result(args, {"versions": {...}})       # the command's JSON object (ignored without --json)
        return 0

``main`` does the rest (``machine_output``): under ``--json`` everything printed while the command
runs (``print``, progress bars, logging, a C library or a child process writing to file
descriptor 1) goes to stderr, and when the command ends stdout receives exactly one line, the
object given to ``set_result`` with ``"command"``, ``"anonymixer"`` (the version) and
``"exit_code"`` put first. A command that ends in an error (exit 2), or is interrupted, writes
``{"command", "anonymixer", "exit_code", "error"}`` instead (``schemas/error.json``); scripts read
``exit_code`` first. Values are plain JSON: paths become strings, NaN and infinities become
``null``. Each command's object has a JSON Schema in ``anonymixer/schemas/`` (``load_schema``),
which the tests validate real outputs against: add or change the schema with the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

from .. import __version__

__all__ = ["add_json_option", "as_json", "machine_output", "set_result"]

_RESULT = "_json_result"


def add_json_option(p: argparse.ArgumentParser) -> None:
    """Add ``--json`` to a command's parser."""
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout (the human lines go to stderr); schema: "
                        f"anonymixer/schemas/{p.prog.split()[-1]}.json")


def set_result(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The command's JSON object (written by ``main`` under ``--json``; ignored without it)."""
    setattr(args, _RESULT, result)


def as_json(value: Any) -> Any:
    """``value`` made of plain JSON types: paths and other objects as strings, tuples as lists,
    NaN and infinities as ``None``; dataclasses are not expanded (give dictionaries)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [as_json(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):   # numpy arrays and scalars
        return as_json(value.tolist())
    return str(value)   # a Path, an enum, ...


@contextlib.contextmanager
def machine_output(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Run a command's body inside this: without ``--json`` it does nothing; with it, stdout goes
    to stderr for the duration, and on leaving, the envelope (yielded: set ``"exit_code"`` and,
    on failure, ``"error"`` in it) merged with ``set_result``'s object is written to the real stdout."""
    envelope: dict[str, Any] = {"command": getattr(args, "command", None), "anonymixer": __version__}
    if not getattr(args, "json", False):
        yield envelope
        return
    stdout = sys.stdout
    with _descriptor_1_to_stderr() as real_stdout, contextlib.redirect_stdout(sys.stderr):
        try:
            yield envelope
        except BaseException as exc:   # a bug: still one object on stdout, then the traceback
            envelope.setdefault("exit_code", 1)
            envelope.setdefault("error", f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            sys.stderr.flush()
            body = {} if "error" in envelope else getattr(args, _RESULT, {})
            text = json.dumps(as_json({**envelope, **body}), allow_nan=False) + "\n"
            if real_stdout is None:
                stdout.write(text)
                stdout.flush()
            else:
                data = memoryview(text.encode())
                while data:
                    data = data[os.write(real_stdout, data):]


@contextlib.contextmanager
def _descriptor_1_to_stderr() -> Iterator[int | None]:
    """File descriptor 1 pointed at stderr for the duration; yields a duplicate of the original
    (``None`` when stdout is not file descriptor 1, as under pytest's capture: then only
    Python-level writes are redirected)."""
    try:
        is_fd1 = sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        is_fd1 = False
    if not is_fd1:
        yield None
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
