"""Ctrl-C and SIGTERM: the first signal stops the run; later ones wait for its clean-up.

The first SIGINT raises ``KeyboardInterrupt`` and the first SIGTERM raises ``errors.Terminated``
(handled alike: the output being written is removed, the summary printed, exit 130 or 143). A
second signal raised the same way *inside* that clean-up would cut it short: a temporary output
left behind, a video container half closed, threads not joined, and at worst the interpreter
aborting (SIGABRT) while other threads still hold its locks. So once a signal has been raised,
later ones are only recorded (and said on stderr, once) until the clean-up is over:

- a run that ends (every file input, SIGTERM on anything) ends with the first signal's exit code;
- a live source stopped by Ctrl-C (the run goes on with the next input) calls ``handled()`` after
  its clean-up: a signal that came meanwhile is raised then, else the next one stops the run again.

SIGKILL remains the way to stop at once (it may leave a hidden ``.partial-`` file, see
``anonymixer.atomic``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM)
WAIT_NOTE = b"anonymixer: cleaning up after the first signal; stopping as soon as that is done\n"


class _State:
    stopping = False          # a signal was raised and its clean-up is under way
    pending: int | None = None
    noted = False
    deferring = 0             # inside ``deferred()`` blocks: a first signal waits for their end


_state = _State()


def _raise_for(number: int) -> None:
    if number == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def _on_signal(number: int, frame: FrameType | None) -> None:
    if _state.stopping:
        _state.pending = _state.pending or number
        if not _state.noted:
            _state.noted = True
            os.write(2, WAIT_NOTE)
        return
    if _state.deferring:
        _state.pending = _state.pending or number   # raised when the ``deferred()`` block ends
        return
    _state.stopping = True
    _raise_for(number)


@contextmanager
def deferred() -> Iterator[None]:
    """A block that a signal must not cut in two (a frame handed to the video encoder and counted):
    a signal that comes inside it is raised as it ends (``Terminated`` or ``KeyboardInterrupt``)."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
        if not _state.deferring and not _state.stopping and _state.pending is not None:
            number, _state.pending = _state.pending, None
            _state.stopping = True
            _raise_for(number)


def handled() -> None:
    """The interrupt raised last has been dealt with and the run goes on: raise the signal that
    came during its clean-up, if any; otherwise the next signal stops the run again."""
    pending, _state.pending = _state.pending, None
    _state.stopping = _state.noted = False
    if pending is not None:
        _state.stopping = True
        _raise_for(pending)


@contextmanager
def installed(whole_process: bool = False) -> Iterator[None]:
    """SIGINT and SIGTERM handled as above for the duration (main thread only: elsewhere Python
    cannot set handlers, and the caller's own handling stays).

    ``whole_process``: the caller is the program itself (``anonymixer`` on the command line); once a
    signal has come, the handlers stay until the process exits, so that the rest of a burst of
    signals cannot interrupt the interpreter's own shutdown (a traceback, or death by the signal).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal ignored when we started (SIGINT of a background job) stays ignored.
    previous = {number: signal.signal(number, _on_signal) for number in SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN}
    _state.stopping, _state.pending, _state.noted = False, None, False
    try:
        yield
    finally:
        if not (whole_process and _state.stopping):
            for number, handler in previous.items():
                signal.signal(number, handler)


def leave_after_signal(code: int) -> None:
    """In the program itself, once a signal has stopped the run and its clean-up is over: end the
    process now with ``code``. CPython puts the default handlers back while it finalises, so the
    rest of a burst of signals arriving then would kill the process by the signal (-15) instead of
    letting it exit with the first one's code. Only atexit hooks are skipped: every ``finally``
    (outputs removed, Ray shut down) has run by now. Without a signal this returns at once."""
    if not _state.stopping:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
