"""Talking to OpenAI-compatible endpoints: the preflight and one streamed chat completion.

The preflight asks every endpoint for ``GET /v1/models`` before any prompt is sent, so an
unreachable server, a refused key or a model id the server does not serve is one line each.
A completion streams, so the time to the first token is seen; ``usage`` gives the token counts
(asked for with ``stream_options``). A request succeeds only with a completion
(:mod:`moe2_cli.measure.replies`). HTTP 5xx, 429, timeouts, dropped connections and 200s that
are not a completion are retried with a doubling, bounded wait; any other HTTP error is final.
Every failure keeps its kind (``Completion.reason``), so the summary can say why.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import httpx

from moe2_cli.measure.power import ServerClock
from moe2_cli.measure.replies import CUT, Parsed, ReplyFailure, ReplyReader
from moe2_cli.scenario.endpoint import Endpoint
from moe2_cli.serve.requests import MalformedJSON, parse_json

PREFLIGHT_TIMEOUT_S = 10.0
MAX_MODEL_LIST_BYTES = 1 << 20  # a list of a few hundred model ids is a few KiB
MAX_BACKOFF_S = 8.0


@dataclass(frozen=True)
class Retry:
    attempts: int = 3  # in all, the first included
    backoff_s: float = 0.5  # the wait before the second attempt; it doubles, up to MAX_BACKOFF_S

    def wait_s(self, attempt: int) -> float:
        return min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Completion:
    """What one request gave: the answer and its timing, or the error that ended it and its
    kind (``reason``: ``http``, ``timeout``, ``connection`` or one of :mod:`.replies`' kinds)."""

    ok: bool
    answer: str = ""
    started: float = 0.0  # wall clock, when the request left
    ended: float = 0.0
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    error: str | None = None
    window: int = 0  # the last attempt's window on the server's clock
    reason: str | None = None


class TransientError(Exception):
    """Worth another try: a 5xx or 429 answer, a timeout, a dropped connection, or a 200 that
    was not a completion. ``reason`` is its kind."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def headers(endpoint: Endpoint) -> dict[str, str]:
    key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


async def preflight(client: httpx.AsyncClient, endpoint: Endpoint, llms: list[str]) -> list[str]:
    """Problems with one endpoint, one line each; empty when every model id is served."""
    where = f"server {endpoint.server!r}"
    if endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
        return [f"{where}: the environment variable {endpoint.api_key_env} (api_key_env) is not set"]
    url = endpoint.api_base + "/models"
    try:
        async with client.stream("GET", url, headers=headers(endpoint), timeout=PREFLIGHT_TIMEOUT_S) as response:
            content = await _capped_text(response, MAX_MODEL_LIST_BYTES)
    except httpx.HTTPError as err:
        return [f"{where}: cannot reach {url} ({_describe(err)})"]
    if response.status_code != 200:
        return [f"{where}: GET {url} answered HTTP {response.status_code}{_error_text(content)}"]
    try:
        served = [m["id"] for m in parse_json(content)["data"]]
    except (MalformedJSON, KeyError, TypeError, IndexError):
        return [f"{where}: GET {url} did not return an OpenAI model list"]
    served = [m for m in served if isinstance(m, str)]
    return [f"{where}: model {endpoint.model_id(llm)!r} (for {llm}) is not served at {endpoint.url} "
            f"(it serves: {', '.join(served) or 'nothing'})"
            for llm in llms if endpoint.model_id(llm) not in served]


async def complete(client: httpx.AsyncClient, endpoint: Endpoint, model: str, messages: list[dict],
                   max_tokens: int | None, retry: Retry, clock: ServerClock) -> Completion:
    """One prompt to one model, retried on transient failures. Each attempt is a window on the
    server's ``clock``; ``Completion.window`` is the last one's."""
    body: dict = {"model": model, "messages": messages, "stream": True, "temperature": 0,
                  "stream_options": {"include_usage": True}}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    error, reason = "", ""
    for attempt in range(1, retry.attempts + 1):
        window, started = clock.open()
        try:
            result = await asyncio.wait_for(_stream(client, endpoint, body), endpoint.timeout_s)
        except (TransientError, httpx.HTTPError, asyncio.TimeoutError) as err:
            error, reason = _describe(err), _reason(err)
        except _FinalError as err:
            return Completion(ok=False, started=started, ended=clock.close(window), attempts=attempt,
                              error=str(err), window=window, reason="http")
        else:
            ended = clock.close(window)
            ttft = None if result.first_text_at is None else result.first_text_at - started
            return Completion(ok=True, answer=result.answer, started=started, ended=ended, ttft_s=ttft,
                              prompt_tokens=_count(result.usage.get("prompt_tokens")),
                              completion_tokens=_count(result.usage.get("completion_tokens")),
                              attempts=attempt, window=window)
        ended = clock.close(window)
        if attempt < retry.attempts:
            await asyncio.sleep(retry.wait_s(attempt))
    return Completion(ok=False, started=started, ended=ended, attempts=retry.attempts, error=error, window=window,
                      reason=reason)


class _FinalError(Exception):
    """Not worth another try: a 4xx answer other than 429 (the request itself is refused)."""


async def _stream(client: httpx.AsyncClient, endpoint: Endpoint, body: dict) -> Parsed:
    url = endpoint.api_base + "/chat/completions"
    # Compressed replies are refused: a small gzip body can inflate far past the byte cap.
    sent = {**headers(endpoint), "Accept-Encoding": "identity"}
    async with client.stream("POST", url, json=body, headers=sent, timeout=endpoint.timeout_s) as reply:
        if reply.status_code >= 500 or reply.status_code == 429:
            raise TransientError(f"HTTP {reply.status_code}", "http")
        if reply.status_code != 200:
            text = await _capped_text(reply)
            raise _FinalError(f"HTTP {reply.status_code}{_error_text(text)}")
        try:
            return await _read_reply(reply)
        except ReplyFailure as err:
            raise TransientError(str(err), err.reason) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as err:
            # The server closed the connection after its 200 but before the body's end: a stream
            # cut short (a single-slot server dropping a request), never an answer.
            raise TransientError(f"the stream was cut ({_describe(err)})", CUT) from None


async def _read_reply(reply: httpx.Response) -> Parsed:
    reader = ReplyReader()
    async for data in reply.aiter_bytes():
        reader.feed(data)
        if reader.done:
            break
    return reader.result()


async def _capped_text(reply: httpx.Response, limit: int = 64 << 10) -> bytes:
    """At most ``limit`` bytes of an error reply: enough for its message."""
    out = b""
    async for data in reply.aiter_bytes():
        out += data
        if len(out) >= limit:
            break
    return out[:limit]


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _describe(err: BaseException) -> str:
    if isinstance(err, (asyncio.TimeoutError, httpx.TimeoutException)):
        return "timed out"
    if isinstance(err, httpx.ConnectError):
        return "connection refused or host unreachable"
    return str(err) or type(err).__name__


def _reason(err: BaseException) -> str:
    if isinstance(err, TransientError):
        return err.reason
    if isinstance(err, (asyncio.TimeoutError, httpx.TimeoutException)):
        return "timeout"
    return "connection"


def _error_text(content: bytes) -> str:
    """``: message`` of an OpenAI error object, or nothing."""
    try:
        message = parse_json(content)["error"]["message"]
    except (MalformedJSON, KeyError, TypeError, IndexError):
        return ""
    return f": {str(message)[:120]}"
