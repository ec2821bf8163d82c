"""The HTTP face of the proxy: an OpenAI-compatible Starlette app.

``POST /v1/chat/completions`` and ``POST /v1/completions`` (streaming and not), ``GET /v1/models``
and ``GET /v1/models/{id}``, ``GET /healthz`` and ``GET /metrics``. Every error is an OpenAI-style
JSON object: a malformed body is a 400, an unknown model a 404, an oversized body a 413, a missing
or wrong key a 401, a wrong method a 405 with ``Allow``, and never a 500 for anything a client
sends. Every completion reply carries ``X-Request-Id`` (the client's, or a new one), which is
also sent to the experts.
"""

from __future__ import annotations

import hmac
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from moe2_cli.serve import DEFAULT_MAX_BODY
from moe2_cli.serve.intake import CHAT, COMPLETIONS, BadRequest, read_request, request_id
from moe2_cli.serve.proxy import CATEGORY_HEADER, EXPERTS_HEADER, Proxy, Reply, Streamed, error_body
from moe2_cli.serve.requests import client_timeout, read_body

OPEN_PATHS = ("/healthz",)  # readiness probes carry no key
SUPPORTED = "POST /v1/chat/completions, POST /v1/completions, GET /v1/models and GET /v1/models/{id}"


class TooLarge(Exception):
    pass


def error(status: int, message: str, kind: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, code, param), status_code=status)


class Guard:
    """ASGI middleware: the bearer token (constant-time compare) on every path but ``/healthz``,
    and a declared ``Content-Length`` above the limit refused before the body is read."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int):
        self.app, self.max_body = app, max_body
        self.expected = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self._refusal(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, path: str, headers: dict[bytes, bytes]) -> Response | None:
        if self.expected is not None and path not in OPEN_PATHS:
            # The scheme is case-insensitive (RFC 9110): "bearer" and "BEARER" are "Bearer".
            scheme, _, given = headers.get(b"authorization", b"").strip().partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.expected):
                reply = error(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                              "invalid_request_error", "invalid_api_key")
                reply.headers["WWW-Authenticate"] = "Bearer"
                return reply
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return error(400, "Content-Length must be a number of bytes", "invalid_request_error")
            if int(declared) > self.max_body:
                return _too_large(self.max_body)
        return None


def _too_large(limit: int) -> JSONResponse:
    return error(413, f"request body larger than {limit} bytes", "invalid_request_error", "request_too_large")


async def _read_json(request: Request, limit: int, endpoint: str) -> dict:
    """The body as a checked JSON object, counting bytes as they arrive (chunked bodies have no length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return read_body(b"".join(chunks), endpoint)


def build_app(proxy: Proxy, *, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY) -> ASGIApp:
    """The app; ``api_key`` (the token itself, not a variable name) protects every route but /healthz."""
    categories = proxy.plan.scenario.instance.categories

    def completion_route(endpoint: str):
        async def handle(request: Request) -> Response:
            rid = request_id(request.headers.get("x-request-id"), uuid.uuid4().hex)
            try:
                body = await _read_json(request, max_body, endpoint)
                asked = read_request(endpoint, body, models=(proxy.model_name,), categories=categories,
                                     category_header=request.headers.get(CATEGORY_HEADER), rid=rid)
                response = _response(await proxy.complete(asked, client_timeout(body, request.headers)))
            except TooLarge:
                response = _too_large(max_body)
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

    async def healthz(request: Request) -> Response:
        health = await proxy.health()
        return JSONResponse(health, status_code=200 if health["status"] == "ready" else 503)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(proxy.metrics.render(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        reply = error(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}",
                      "invalid_request_error")
        reply.headers.update(getattr(exc, "headers", None) or {})  # Allow, on a 405
        return reply

    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await proxy.close()  # the upstream connection pools

    anything = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [Route("/v1/chat/completions", completion_route(CHAT), methods=["POST"]),
              Route("/v1/completions", completion_route(COMPLETIONS), methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/v1/models/{model_id:path}", model, methods=["GET"]),
              Route("/v1/responses", unsupported, methods=anything),
              Route("/v1/responses/{rest:path}", unsupported, methods=anything),
              Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    return Guard(app, token=api_key, max_body=max_body)


def _model(proxy: Proxy) -> dict:
    return {"id": proxy.model_name, "object": "model", "created": 0, "owned_by": "moe2"}


def _response(reply: Reply | Streamed) -> Response:
    headers = {EXPERTS_HEADER: ",".join(reply.experts)} if reply.experts else {}
    if isinstance(reply, Reply) and reply.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(reply.retry_after_s)))
    if isinstance(reply, Streamed):
        return StreamingResponse(reply.events, media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)
