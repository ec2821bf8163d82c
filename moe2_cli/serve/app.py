"""The HTTP face of the proxy: an OpenAI-compatible Starlette app.

``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models``, ``GET /healthz`` and
``GET /metrics``. Every error is an OpenAI-style JSON object: a malformed body is a 400, an
oversized one a 413, a missing or wrong key a 401, and never a 500 for anything a client sends.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from moe2_cli.serve import DEFAULT_MAX_BODY
from moe2_cli.serve.proxy import CATEGORY_HEADER, EXPERTS_HEADER, BadRequest, Proxy, Reply, error_body

OPEN_PATHS = ("/healthz",)  # readiness probes carry no key


class TooLarge(Exception):
    pass


def error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, code), status_code=status)


class Guard:
    """ASGI middleware: the bearer token (constant-time compare) on every path but ``/healthz``,
    and a declared ``Content-Length`` above the limit refused before the body is read."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int):
        self.app, self.max_body = app, max_body
        self.expected = f"Bearer {token}".encode() if token else None

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
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
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


async def _read_json(request: Request, limit: int) -> dict:
    """The body as a JSON object, counting bytes as they arrive (chunked bodies have no length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"the body is not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object (got {type(body).__name__})")
    return body


def build_app(proxy: Proxy, *, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY) -> ASGIApp:
    """The app; ``api_key`` (the token itself, not a variable name) protects every route but /healthz."""

    async def completions(request: Request) -> Response:
        try:
            body = await _read_json(request, max_body)
            reply = await proxy.chat(body, request.headers.get(CATEGORY_HEADER))
        except TooLarge:
            return _too_large(max_body)
        except BadRequest as err:
            return error(400, str(err), "invalid_request_error")
        if reply.status != 200 or not body.get("stream"):
            return JSONResponse(reply.body, status_code=reply.status, headers=_experts_header(reply))
        return StreamingResponse(_events(reply, body), media_type="text/event-stream",
                                 headers=_experts_header(reply))

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": proxy.model_name, "object": "model", "created": 0,
                                                         "owned_by": "moe2"}]})

    async def healthz(request: Request) -> Response:
        health = await proxy.health()
        return JSONResponse(health, status_code=200 if health["status"] == "ready" else 503)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(proxy.metrics.render(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        return error(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}",
                     "invalid_request_error")

    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await proxy.close()  # the upstream connection pools

    routes = [Route("/v1/chat/completions", completions, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    return Guard(app, token=api_key, max_body=max_body)


def _experts_header(reply: Reply) -> dict[str, str]:
    return {EXPERTS_HEADER: ",".join(reply.experts)} if reply.experts else {}


async def _events(reply: Reply, body: dict) -> AsyncIterator[str]:
    """The aggregated answer as server-sent chat.completion.chunk events (answers are combined
    whole, so the text arrives in one content chunk), with usage when the client asked for it."""
    base = {"id": reply.body["id"], "object": "chat.completion.chunk", "created": int(time.time()),
            "model": reply.body["model"]}

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    yield event({"content": reply.text})
    yield event({}, "stop", moe2=reply.body["moe2"])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': reply.body['usage']})}\n\n"
    yield "data: [DONE]\n\n"
