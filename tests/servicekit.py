"""Helpers for the terminal service tests: a real store on the real models, and a real uvicorn
server on 127.0.0.1 in a thread."""

import contextlib
import threading
import time

import cv2
import pytest
from conftest import TEST_SECRET
from facekit import photo
from terminalkit import cached_maker

import anonymixer.terminal.terminal as terminal_module
from anonymixer.keys import Key
from anonymixer.terminal import Terminal
from anonymixer.terminal.service import ServiceOptions, TerminalService, bind, server

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def jpeg(image):
    return cv2.imencode(".jpg", image)[1].tobytes()


def open_site(folder, enrol=("astronaut",)):
    """A store in ``folder`` under the tests' key (faces64, the default kind and recogniser; the
    models are loaded once per session), with ``enrol``'s packaged photos enrolled by name."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(terminal_module, "TemplateMaker", cached_maker)
        terminal = Terminal.open(folder / "site.db", Key(TEST_SECRET))
    for name in enrol:
        terminal.enrol(name, [photo(name)])
    return terminal


@contextlib.contextmanager
def serving(terminal, **options):
    """The service on ``terminal`` listening on a free port of 127.0.0.1; yields its base URL and
    stops it on leaving (it runs in a daemon thread, so it also ends with the test process)."""
    sock = bind("127.0.0.1", 0)
    service = TerminalService(terminal, TOKEN.encode(), ServiceOptions(**options))
    running = server(service.app)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        running.should_exit = True
        thread.join(timeout=30)
        service.close()
        sock.close()
