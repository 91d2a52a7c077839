"""Helpers for the terminal service tests: a real uvicorn server on 127.0.0.1 in a thread."""

import contextlib
import threading
import time

import cv2

from anonymixer.terminal.service import ServiceOptions, TerminalService, bind, server

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def jpeg(image):
    return cv2.imencode(".jpg", image)[1].tobytes()


@contextlib.contextmanager
def serving(terminal, **options):
    """The service on ``terminal`` listening on a free port of 127.0.0.1; yields its base URL and
    stops it on leaving (it runs in a daemon thread, so it also ends with the test process)."""
    sock = bind("127.0.0.1", 0)
    running = server(TerminalService(terminal, TOKEN.encode(), ServiceOptions(**options)).app)
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
        sock.close()
