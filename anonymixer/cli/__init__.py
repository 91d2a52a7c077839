# PYTHON_ARGCOMPLETE_OK   (argcomplete's marker: this program completes its own arguments)
"""`anonymixer <command>`: the command line.

Every command reports bad input as one line naming the file and the problem, finishes the rest of
a batch, and exits non-zero when anything failed (1) or the command itself was wrong (2).
Secrets are never printed: key files are referred to by path and fingerprint only.

One module per command group, each with ``register(sub)`` adding its subparsers; add a command
group by adding a module and naming it in ``GROUPS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

from .. import __version__
from .. import interrupts
from ..errors import AnonymixerError, printable
from ..runtime.doctor import OPTIONAL_PACKAGES
from . import bench, evaluate, keys, models, protect, sign, terminal
from .common import DEFAULT_MODEL, protector_from_args
from .jsonout import machine_output

__all__ = ["DEFAULT_MODEL", "GROUPS", "build_parser", "main", "protector_from_args"]

DESCRIPTION = ("anonymixer: replace faces by protected faces that a face recogniser matches only under "
               "the same secret key (cancelable face generation, FaceAnonyMixer)")

# In the order `anonymixer --help` lists them.
GROUPS: tuple[ModuleType, ...] = (keys, protect, models, evaluate, bench, sign, terminal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anonymixer", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"anonymixer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion, when the optional argcomplete package is installed (``pip install
    'anonymixer[completion]'``, then ``eval "$(register-python-argcomplete anonymixer)"`` in the
    shell's start-up file). It acts only when the shell asks for completions (``_ARGCOMPLETE`` is
    set): it prints them and exits; otherwise it returns at once."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def _trust(args: argparse.Namespace) -> None:
    """The trusted key of a command that loads models (``--trusted-key``, else ``$ANONYMIXER_TRUSTED_KEY``),
    loaded before any work and written back into ``args`` so that Ray actors check with the same key;
    other commands leave it to be read from the environment when a model is loaded."""
    from .. import signing

    if not hasattr(args, "trusted_key"):
        signing.forget()
        return
    trusted = signing.trust(args.trusted_key)
    args.trusted_key = None if trusted is None else str(trusted.path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; exit code 0, 1 (some input failed), 2 (the command could not run), or
    128 + the signal number after Ctrl-C (130) or SIGTERM (143), which are handled alike."""
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="anonymixer: %(levelname)s: %(message)s")
    # The first Ctrl-C/SIGTERM stops the run; later ones wait for its clean-up (and, when this is the
    # program itself, argv None, for the interpreter's shutdown). --json: one object on stdout
    # (cli/jsonout.py).
    with interrupts.installed(whole_process=argv is None), machine_output(args) as envelope:
        try:
            _trust(args)
            code = int(args.func(args))
        except AnonymixerError as exc:
            envelope["error"] = printable(str(exc))
            print(f"anonymixer: error: {envelope['error']}", file=sys.stderr)
            code = 2
        except ModuleNotFoundError as exc:
            advice = OPTIONAL_PACKAGES.get((exc.name or "").split(".")[0])
            if advice is None:
                raise
            envelope["error"] = f"this command needs {exc.name}, which is not installed: {advice}"
            print(f"anonymixer: error: {envelope['error']}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt as exc:
            number = getattr(exc, "signal_number", signal.SIGINT.value)
            envelope["error"] = f"interrupted ({signal.Signals(number).name})"
            print(f"anonymixer: {envelope['error']}", file=sys.stderr)
            code = 128 + number
        envelope["exit_code"] = code
    if argv is None:
        interrupts.leave_after_signal(code)
    return code
