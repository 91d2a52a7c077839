"""The terminal's HTTP service (`anonymixer terminal serve`): JSON over HTTP on one ``Terminal``
(one store, one key, one model per process), and the operator page at ``/``.

Every route but ``GET /healthz`` and the page's static files needs ``Authorization: Bearer
<token>``. Uploads are read into memory (never spooled to disk), bounded in size, and decoded by
the same safe reader as ``protect``. Model calls (enrol, verify, identify) run one at a time, in
arrival order, on one worker thread; store reads run on others. Nothing here ever handles the
key's secret: responses carry its public fingerprint only.

Starlette (routing, static files) and uvicorn (the ASGI server) come from the ``terminal`` extra.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AnonymixerError, printable
from . import Decision, StoreMismatch, Terminal, UnknownSubject, read_image_bytes
from .guard import BearerToken, Form, Problem, RateLimit, read_form

logger = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).with_name("static")
MAX_ENROL_IMAGES = 10
MAX_AUDIT_ROWS = 1000
# The page talks to its own origin only; no inline script, so a name that slips past escaping
# still cannot run.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store")]


@dataclass(frozen=True)
class ServiceOptions:
    """Limits of one service. ``verify_rate`` probes (verify, identify) per second per client
    address after a burst of ``verify_burst``; ``verify_rate <= 0`` turns the limit off."""

    max_upload_bytes: int = 10 * 1024 * 1024
    verify_rate: float = 2.0
    verify_burst: int = 10


class SubjectName(Convertor[str]):
    """A path segment holding a subject's name, which may contain '/', newlines or anything else."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("subject", SubjectName())


def decision_json(decision: Decision) -> dict[str, Any]:
    """A ``Decision`` as the JSON the API returns (candidates as ``{"name", "score"}`` objects)."""
    body = asdict(decision)
    body["candidates"] = [{"name": name, "score": float(score)} for name, score in decision.candidates]
    return body


def face_url(name: str) -> str:
    return f"/v1/subjects/{quote(name, safe='')}/face"


class TerminalService:
    """The routes of one service on one ``Terminal``; ``app`` is the ASGI application."""

    def __init__(self, terminal: Terminal, token: bytes, options: ServiceOptions = ServiceOptions()) -> None:
        self.terminal = terminal
        self.options = options
        self._bearer = BearerToken(token)
        self._probes = RateLimit(options.verify_rate, options.verify_burst)
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="terminal-model")
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("anonymixer_terminal_http_requests", "HTTP requests answered",
                                 ["route", "method", "status"], registry=self.registry)
        self._seconds = Histogram("anonymixer_terminal_http_request_seconds", "Time to answer a request",
                                  ["route"], registry=self.registry,
                                  buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self._decisions = Counter("anonymixer_terminal_decisions", "Verify and identify decisions",
                                  ["action", "accepted"], registry=self.registry)
        self._refused = Counter("anonymixer_terminal_refused", "Requests refused before the model ran",
                                ["reason"], registry=self.registry)
        api: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
            ("POST", "/v1/enrol", self.enrol), ("POST", "/v1/verify", self.verify),
            ("POST", "/v1/identify", self.identify), ("POST", "/v1/revoke", self.revoke),
            ("GET", "/v1/info", self.info), ("GET", "/v1/subjects", self.subjects),
            ("GET", "/v1/subjects/{name:subject}/face", self.face),
            ("DELETE", "/v1/subjects/{name:subject}", self.forget),
            ("GET", "/v1/audit", self.audit), ("GET", "/metrics", self.metrics)]
        # Routes are labelled by their template without the convertor: "/v1/subjects/{name}".
        routes: list[Route | Mount] = [Route(path, self._guarded(path.replace(":subject", ""), handler),
                                             methods=[method]) for method, path, handler in api]
        routes += [Route("/healthz", self._guarded("/healthz", self.healthz, open_=True), methods=["GET"]),
                   Route("/", self._guarded("/", self.page, open_=True), methods=["GET"]),
                   Mount("/static", StaticFiles(directory=STATIC), name="static")]
        self.app: ASGIApp = _with_headers(Starlette(routes=routes))

    def close(self) -> None:
        """Stop the model thread (after the server has stopped); the ``Terminal`` is the caller's."""
        self._model_thread.shutdown(wait=True)

    # -- the guard around every route ---------------------------------------------------------

    def _guarded(self, route: str, handler: Callable[[Request], Awaitable[Response]], *,
                 open_: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if not open_:
                    await self._authorise(request, route)
                response = await handler(request)
            except Problem as problem:
                response = JSONResponse({"error": problem.message}, problem.status, headers=problem.headers)
            except UnknownSubject as exc:
                response = JSONResponse({"error": printable(str(exc))}, 404)
            except StoreMismatch as exc:
                response = JSONResponse({"error": printable(str(exc))}, 409)
            except AnonymixerError as exc:
                response = JSONResponse({"error": printable(str(exc))}, 400)
            except Exception:
                logger.exception("%s %s failed", request.method, route)
                response = JSONResponse({"error": "internal error; see the service's log"}, 500)
            seconds = time.perf_counter() - started
            self._requests.labels(route, request.method, str(response.status_code)).inc()
            self._seconds.labels(route).observe(seconds)
            # The route's template, never its path: subject names stay out of the log.
            logger.info("%s %s %s %d %.1f ms", _client(request), request.method, route,
                        response.status_code, seconds * 1e3)
            return response
        return endpoint

    async def _authorise(self, request: Request, route: str) -> None:
        problem = self._bearer.problem(request.headers.get("authorization"))
        if problem is None:
            return
        self._refused.labels("unauthorised").inc()
        await self._record("auth", "refused", request, f"{request.method} {route}: {problem}")
        raise Problem(401, "unauthorised", {"WWW-Authenticate": "Bearer"})

    async def _record(self, action: str, outcome: str, request: Request, detail: str) -> None:
        await run_in_threadpool(self.terminal.record, action, outcome, source=_source(request), detail=detail)

    async def _model_call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the one model thread. Its queue is first come, first
        served: under load every request waits its turn, where threads contending for a lock would
        let some wait many turns (the p99 of the load benchmark)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._model_thread, functools.partial(function, *args, **kwargs))

    async def _form(self, request: Request) -> Form:
        return await read_form(request.headers.get("content-type"), request.headers.get("content-length"),
                               request.stream(), self.options.max_upload_bytes)

    async def _images(self, request: Request, action: str, form: Form, most: int) -> list[np.ndarray]:
        """The uploaded images of ``form`` decoded (BGR uint8); a bad one is audited and a 400."""
        try:
            return [await run_in_threadpool(read_image_bytes, data, label)
                    for label, data in form.files("image", most)]
        except (Problem, AnonymixerError) as exc:
            message = exc.message if isinstance(exc, Problem) else printable(str(exc))
            self._refused.labels("bad image").inc()
            await self._record(action, "bad request", request, message)
            raise Problem(400, message) from None

    async def _probe_allowed(self, request: Request, action: str) -> None:
        wait = self._probes.wait(_client(request))
        if wait > 0:
            self._refused.labels("rate limited").inc()
            await self._record(action, "rate limited", request, f"over {self.options.verify_rate:g}/s")
            raise Problem(429, f"too many requests; retry in {wait:.1f} s",
                          {"Retry-After": str(max(1, round(wait)))})

    # -- the routes ------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def info(self, request: Request) -> Response:
        """The store's public settings (kind, recogniser, model, threshold...) and the serving
        key's fingerprint."""
        settings = await run_in_threadpool(self.terminal.info)
        return JSONResponse({**settings, "fingerprint": self.terminal.fingerprint})

    async def enrol(self, request: Request) -> Response:
        form = await self._form(request)
        name = form.text("name")
        images = await self._images(request, "enrol", form, MAX_ENROL_IMAGES)
        enrolment = await self._model_call(self.terminal.enrol, name, images, source=_source(request))
        return JSONResponse({"name": enrolment.name, "templates": enrolment.templates,
                             "face": face_url(enrolment.name)}, 201)

    async def verify(self, request: Request) -> Response:
        await self._probe_allowed(request, "verify")
        form = await self._form(request)
        name = form.text("name")
        [image] = await self._images(request, "verify", form, 1)
        decision = await self._model_call(self.terminal.verify, name, image, source=_source(request))
        self._decisions.labels("verify", str(decision.accepted).lower()).inc()
        return JSONResponse(decision_json(decision))

    async def identify(self, request: Request) -> Response:
        await self._probe_allowed(request, "identify")
        form = await self._form(request)
        [image] = await self._images(request, "identify", form, 1)
        decision = await self._model_call(self.terminal.identify, image, source=_source(request))
        self._decisions.labels("identify", str(decision.accepted).lower()).inc()
        return JSONResponse(decision_json(decision))

    async def revoke(self, request: Request) -> Response:
        fingerprint = (await self._form(request)).text("fingerprint").strip()
        retired = await run_in_threadpool(self.terminal.revoke, fingerprint, source=_source(request))
        return JSONResponse({"fingerprint": fingerprint, "retired": retired})

    async def forget(self, request: Request) -> Response:
        name = request.path_params["name"]
        erased = await run_in_threadpool(self.terminal.forget, name, source=_source(request))
        return JSONResponse({"name": name, "erased": erased})

    async def subjects(self, request: Request) -> Response:
        subjects = await run_in_threadpool(self.terminal.subjects)
        return JSONResponse({"subjects": [
            {"name": s.name, "templates": s.templates, "enrolled_at": s.enrolled_at,
             "face": face_url(s.name) if s.protected_face_png else None} for s in subjects]})

    async def face(self, request: Request) -> Response:
        """A subject's protected face (PNG), made by the generator: never the enrolment photo."""
        name = request.path_params["name"]
        for subject in await run_in_threadpool(self.terminal.subjects):
            if subject.name == name and subject.protected_face_png:
                return Response(subject.protected_face_png, media_type="image/png")
        raise Problem(404, "no protected face for that name")

    async def audit(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT_ROWS:
            raise Problem(400, f"limit must be a whole number from 1 to {MAX_AUDIT_ROWS}")
        rows = await run_in_threadpool(self.terminal.audit, int(raw))
        return JSONResponse({"rows": [asdict(row) for row in rows]})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _source(request: Request) -> str:
    return f"http {_client(request)}"


def _with_headers(app: ASGIApp) -> ASGIApp:
    """``app`` with the page's security headers on every response."""
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)
        await app(scope, receive, send_with_headers)
    return wrapped


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one). Raises ``OSError``."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    return sock


def server(app: ASGIApp) -> Any:
    """A uvicorn server for ``app``: our own access log line (route templates, no names) rather
    than uvicorn's, which would log subject names from the path."""
    import uvicorn

    # limit_concurrency: past 64 open requests, 503 at once rather than an unbounded queue.
    return uvicorn.Server(uvicorn.Config(app, access_log=False, server_header=False, log_config=None,
                                         limit_concurrency=64, timeout_graceful_shutdown=5))
