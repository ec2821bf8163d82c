"""The HTTP face of the proxy: an OpenAI-compatible Starlette app.

``POST /v1/chat/completions`` and ``POST /v1/completions`` (streaming and not), ``GET /v1/models``
and ``GET /v1/models/{id}``; ``POST /v1/feedback`` (:mod:`moe2_cli.serve.feedback`); ``GET /healthz``
(alive), ``GET /readyz`` (ready to serve) and
``GET /metrics``, answered from memory whatever the load. Every error is an OpenAI-style JSON
object: a malformed body is a 400, an unknown model a 404, an oversized body a 413 (sent once the
body is read, so the client sees it), a missing or wrong key a 401, a wrong method a 405 with
``Allow``, a request past the admission bounds or during the drain a 503 with ``Retry-After``, and
never a 500 for anything a client sends. Every completion reply carries ``X-Request-Id`` (the
client's, or a new one), which is also sent to the experts.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import math
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moe2_cli.serve import DEFAULT_MAX_BODY
from moe2_cli.serve.admission import RETRY_AFTER_S, Admission, Bounds, Rejected, default_max_inflight
from moe2_cli.serve.chunks import error_event
from moe2_cli.serve.departure import unless_client_leaves
from moe2_cli.serve.feedback import feedback_route
from moe2_cli.serve.intake import CATEGORY_HEADER, CHAT, COMPLETIONS, BadRequest, read_request, request_id
from moe2_cli.serve.proxy import EXPERTS_HEADER, Proxy, Reply, Streamed, error_body
from moe2_cli.serve.readiness import Readiness
from moe2_cli.serve.requests import client_timeout, read_body

OPEN_PATHS = ("/healthz", "/readyz")  # probes carry no key
PROBES = ("/healthz", "/readyz", "/metrics")
COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions")
SUPPORTED = "POST /v1/chat/completions, POST /v1/completions, GET /v1/models and GET /v1/models/{id}"
# A refused body is read to its end before the refusal is sent (a server that closes on a client
# still sending resets the connection, and the client never sees the status), up to this many
# times the body limit; past that the connection is closed after the refusal.
DRAIN_FACTOR = 4
MAX_HEADER_BYTES = 16 * 1024  # names and values of a request's headers together


_COMPLETIONS = tuple(b"POST " + path.encode() for path in COMPLETION_PATHS)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*\r\n", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)


class TooLarge(Exception):
    def __init__(self, whole: bool):
        super().__init__("request body too large")
        self.whole = whole  # the body was read to its end


def error(status: int, message: str, kind: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, code, param), status_code=status)


class Front:
    """The outermost ASGI layer. ``/healthz``, ``/readyz`` and ``/metrics`` are answered here,
    never behind chat work; then the bearer token (constant-time compare) on every path but the
    probes, the declared ``Content-Length``, and admission control for completions."""

    def __init__(self, app: ASGIApp, *, proxy: Proxy, admission: Admission, readiness: Readiness,
                 token: str | None, max_body: int):
        self.app, self.proxy, self.admission, self.readiness = app, proxy, admission, readiness
        self.max_body, self.drain_cap = max_body, DRAIN_FACTOR * max_body
        self.expected = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, headers = scope["path"], dict(scope["headers"])
        refusal = _big_headers(scope["headers"]) or self._unauthorised(path, headers)
        refusal = refusal or self._probe(path, scope["method"]) or self._bad_length(headers)
        if refusal is not None:
            await self._refuse(refusal, scope, receive, send)
        elif path in COMPLETION_PATHS and scope["method"] == "POST":
            await self._admitted(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def probe_answer(self, scope: Scope) -> Response | None:
        """A probe's answer, or its refusal (headers too large, no key for /metrics, a method other
        than GET or HEAD); None off the probe paths. Safe to call from another thread: it reads
        only what can be read while the event loop changes it."""
        if scope["path"] not in PROBES:
            return None
        return (_big_headers(scope["headers"]) or self._unauthorised(scope["path"], dict(scope["headers"]))
                or self._probe(scope["path"], scope["method"]))

    def _unauthorised(self, path: str, headers: dict[bytes, bytes]) -> Response | None:
        if self.expected is None or path in OPEN_PATHS:
            return None
        # The scheme is case-insensitive (RFC 9110): "bearer" and "BEARER" are "Bearer".
        scheme, _, given = headers.get(b"authorization", b"").strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.expected):
            return None
        reply = error(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                      "invalid_request_error", "invalid_api_key")
        reply.headers["WWW-Authenticate"] = "Bearer"
        return reply

    def _probe(self, path: str, method: str) -> Response | None:
        """Liveness, readiness or metrics, answered from memory."""
        if path not in PROBES:
            return None
        if method not in ("GET", "HEAD"):
            reply = error(405, f"{method} {path}: Method Not Allowed", "invalid_request_error")
            reply.headers["Allow"] = "GET"
            return reply
        if path == "/healthz":
            return JSONResponse({"status": "alive", "model": self.proxy.model_name})
        if path == "/readyz":
            report = self.readiness.report()
            return JSONResponse(report, status_code=200 if report["status"] == "ready" else 503)
        text = self.proxy.metrics.render() + "\n".join(self.admission.render()) + "\n"
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    def _bad_length(self, headers: dict[bytes, bytes]) -> Response | None:
        declared = headers.get(b"content-length")
        if declared is None:
            return None
        if not declared.isdigit():
            return error(400, "Content-Length must be a number of bytes", "invalid_request_error")
        return _too_large(self.max_body) if int(declared) > self.max_body else None

    async def _refuse(self, reply: Response, scope: Scope, receive: Receive, send: Send) -> None:
        if not await discard_body(receive, self.drain_cap):
            reply.headers["Connection"] = "close"
        await reply(scope, receive, send)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request in a slot, or a 503 at once; a request the drain cuts is answered 503 too."""
        try:
            ticket = await self.admission.enter()
        except Rejected as err:
            await self._refuse(_unavailable(err.reason), scope, receive, send)
            return
        watched = Watched(send)
        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            if not ticket.cut:
                raise
            # The cancellation was the drain's, not the server's: the request is still answered.
            # (Python 3.11+ counts cancellations; before that there is nothing to undo.)
            uncancel = getattr(asyncio.current_task(), "uncancel", None)
            if uncancel is not None:
                uncancel()
            await watched.cut_short(scope, receive)
        finally:
            self.admission.leave(ticket)


class Watched:
    """An ASGI ``send`` that remembers how far the response went, so a request cut by the drain
    can still be answered properly: a 503 before the response began, else the stream ended."""

    def __init__(self, send: Send):
        self.send, self.started, self.finished, self.stream = send, False, False, False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.stream = any(k == b"content-type" and v.startswith(b"text/event-stream")
                              for k, v in message.get("headers", ()))
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self.send(message)

    async def cut_short(self, scope: Scope, receive: Receive) -> None:
        if not self.started:
            await _unavailable("stopped")(scope, receive, self.send)
            return
        if self.finished:
            return
        last = error_event("the server stopped before the reply was complete", "server_error",
                           "server_shutting_down") if self.stream else ""
        await self.send({"type": "http.response.body", "body": last.encode(), "more_body": False})


def _big_headers(headers: list[tuple[bytes, bytes]]) -> Response | None:
    """A 431 for headers over the limit that arrived in one read, before the HTTP parser's own
    limit (which bounds what it buffers) could see them."""
    size = sum(len(name) + len(value) for name, value in headers)
    if size <= MAX_HEADER_BYTES:
        return None
    return error(431, f"request headers larger than {MAX_HEADER_BYTES} bytes", "invalid_request_error",
                 "headers_too_large")


async def discard_body(receive: Receive, cap: int) -> bool:
    """Read the request body to its end without keeping it; False if it is longer than ``cap``
    bytes (or the client left), when the connection is to be closed."""
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if seen > cap:
            return False


_UNAVAILABLE = {"busy": "the server is at its limit of requests in flight and queued; retry later",
                "queue_timeout": "no slot freed up while the request waited; retry later",
                "draining": "the server is shutting down; retry on another instance",
                "stopped": "the server shut down before the reply was ready; retry on another instance"}


def _unavailable(reason: str) -> JSONResponse:
    stopping = reason in ("draining", "stopped")
    reply = error(503, _UNAVAILABLE[reason], "server_error", "server_shutting_down" if stopping else
                  "server_overloaded")
    reply.headers["Retry-After"] = str(RETRY_AFTER_S)
    if stopping:  # a client keeping the connection would send its retry to a server going away
        reply.headers["Connection"] = "close"
    return reply


@functools.cache  # a burst refuses thousands: the same few bytes, made once per reason
def unavailable_bytes(reason: str) -> bytes:
    """The whole HTTP/1.1 503 of :func:`_unavailable`, for a connection refused before parsing."""
    reply = _unavailable(reason)
    reply.headers["Connection"] = "close"
    head = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
    return f"HTTP/1.1 503 Service Unavailable\r\n{head}\r\n".encode("latin-1") + bytes(reply.body)


def whole_completion(data: bytes) -> bool:
    """Whether ``data`` holds one whole completion request (its request line, headers and a body of
    the declared length), recognised without an HTTP parser."""
    line = data[:data.find(b"\r\n")]
    if not any(line.startswith(path) and line[len(path):len(path) + 1] in (b" ", b"?") for path in _COMPLETIONS):
        return False
    end = data.find(b"\r\n\r\n")
    length = _CONTENT_LENGTH.search(data, 0, end + 2) if end > 0 else None
    if length is None or _TRANSFER_ENCODING.search(data, 0, end + 2):
        return False
    return len(data) - (end + 4) >= int(length.group(1))


def _too_large(limit: int) -> JSONResponse:
    return error(413, f"request body larger than {limit} bytes", "invalid_request_error", "request_too_large")


async def _read_json(request: Request, limit: int, cap: int, endpoint: str) -> dict:
    """The body as a checked JSON object, counting bytes as they arrive (chunked bodies have no
    length); an oversized one is still read to its end, up to ``cap`` bytes, so the client hears
    the 413."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(whole=False)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise TooLarge(whole=True)
    return read_body(b"".join(chunks), endpoint)


def build_app(proxy: Proxy, *, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY,
              admission: Admission | None = None) -> Front:
    """The app; ``api_key`` (the token itself, not a variable name) protects every route but the
    probes. ``admission`` bounds the completions worked on (default: derived from S and k)."""
    if admission is None:
        inflight = default_max_inflight(len(proxy.plan.selection), proxy.plan.k)
        admission = Admission(Bounds(max_inflight=inflight, max_queue=inflight))
    readiness = Readiness(proxy, admission)

    def completion_route(endpoint: str):
        async def handle(request: Request) -> Response:
            rid = request_id(request.headers.get("x-request-id"), uuid.uuid4().hex)
            try:
                body = await _read_json(request, max_body, DRAIN_FACTOR * max_body, endpoint)
                asked = read_request(endpoint, body, models=(proxy.model_name,), intake=proxy.intake,
                                     headers=request.headers, rid=rid)
                work = proxy.complete(asked, client_timeout(body, request.headers))
                reply = await unless_client_leaves(request.receive, work)
                if reply is None:
                    proxy.metrics.client_gone.inc(())
                    return error(499, "the client closed the connection before the reply began",
                                 "invalid_request_error", "client_closed")
                response = _response(reply)
            except TooLarge as err:
                response = _too_large(max_body)
                if not err.whole:
                    response.headers["Connection"] = "close"
            except BadRequest as err:
                response = error(err.status, str(err), "invalid_request_error", err.code, err.param)
            response.headers["X-Request-Id"] = rid
            return response

        return handle

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model(proxy)]})

    async def model(request: Request) -> Response:
        wanted = request.path_params["model_id"]
        if wanted != proxy.model_name:
            return error(404, f"The model {wanted!r} does not exist (this server serves {proxy.model_name})",
                         "invalid_request_error", "model_not_found", "model")
        return JSONResponse(_model(proxy))

    async def unsupported(request: Request) -> Response:
        return error(404, f"{request.url.path} is not served here: moe2 serves {SUPPORTED}",
                     "invalid_request_error", "unsupported_endpoint")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        reply = error(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}",
                      "invalid_request_error")
        reply.headers.update(getattr(exc, "headers", None) or {})  # Allow, on a 405
        return reply

    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        await readiness.start()
        await proxy.start()
        for companion in proxy.companions:
            await companion.start()
        try:
            yield
        finally:
            await readiness.stop()
            for companion in proxy.companions:
                await companion.stop()
            await proxy.close()  # the upstream connection pools

    anything = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [Route("/v1/chat/completions", completion_route(CHAT), methods=["POST"]),
              Route("/v1/completions", completion_route(COMPLETIONS), methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/v1/feedback", feedback_route(proxy), methods=["POST"]),
              Route("/v1/models/{model_id:path}", model, methods=["GET"]),
              Route("/v1/responses", unsupported, methods=anything),
              Route("/v1/responses/{rest:path}", unsupported, methods=anything)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    return Front(app, proxy=proxy, admission=admission, readiness=readiness, token=api_key, max_body=max_body)


def _model(proxy: Proxy) -> dict:
    return {"id": proxy.model_name, "object": "model", "created": 0, "owned_by": "moe2"}


def _response(reply: Reply | Streamed) -> Response:
    headers = {EXPERTS_HEADER: ",".join(reply.experts)} if reply.experts else {}
    if reply.category is not None and reply.category.isascii() and reply.category.isprintable():
        headers[CATEGORY_HEADER] = reply.category  # a header holds ASCII; the moe2 field has any name
    if isinstance(reply, Reply) and reply.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(reply.retry_after_s)))
    if isinstance(reply, Streamed):
        return StreamingResponse(reply.events, media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)
