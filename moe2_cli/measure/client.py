"""Talking to OpenAI-compatible endpoints: the preflight and one streamed chat completion.

The preflight asks every endpoint for ``GET /v1/models`` before any prompt is sent, so an
unreachable server, a refused key or a model id the server does not serve is one line each.
A completion streams, so the time to the first token is seen; ``usage`` gives the token counts
(asked for with ``stream_options``). HTTP 5xx, 429, timeouts and dropped connections are retried
with a doubling, bounded wait; any other error is final.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass

import httpx

from moe2_cli.measure.power import ServerClock
from moe2_cli.scenario.endpoint import Endpoint

PREFLIGHT_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 8.0


@dataclass(frozen=True)
class Retry:
    attempts: int = 3  # in all, the first included
    backoff_s: float = 0.5  # the wait before the second attempt; it doubles, up to MAX_BACKOFF_S

    def wait_s(self, attempt: int) -> float:
        return min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Completion:
    """What one request gave: the answer and its timing, or the error that ended it."""

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


class TransientError(Exception):
    """Worth another try: a 5xx or 429 answer, a timeout, a dropped connection."""


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
        response = await client.get(url, headers=headers(endpoint), timeout=PREFLIGHT_TIMEOUT_S)
    except httpx.HTTPError as err:
        return [f"{where}: cannot reach {url} ({_describe(err)})"]
    if response.status_code != 200:
        return [f"{where}: GET {url} answered HTTP {response.status_code}{_error_text(response)}"]
    try:
        served = [m["id"] for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return [f"{where}: GET {url} did not return an OpenAI model list"]
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
    error = ""
    for attempt in range(1, retry.attempts + 1):
        window, started = clock.open()
        try:
            result = await asyncio.wait_for(_stream(client, endpoint, body, started), endpoint.timeout_s)
        except (TransientError, httpx.TransportError, asyncio.TimeoutError) as err:
            error = _describe(err)
        except _FinalError as err:
            return Completion(ok=False, started=started, ended=clock.close(window), attempts=attempt,
                              error=str(err), window=window)
        else:
            ended = clock.close(window)
            return Completion(ok=True, answer=result.answer, started=started, ended=ended, ttft_s=result.ttft_s,
                              prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                              attempts=attempt, window=window)
        ended = clock.close(window)
        if attempt < retry.attempts:
            await asyncio.sleep(retry.wait_s(attempt))
    return Completion(ok=False, started=started, ended=ended, attempts=retry.attempts, error=error, window=window)


class _FinalError(Exception):
    """Not worth another try: a 4xx answer, or a stream that makes no sense."""


@dataclass
class _Streamed:
    answer: str
    ttft_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None


async def _stream(client: httpx.AsyncClient, endpoint: Endpoint, body: dict, started: float) -> _Streamed:
    parts: list[str] = []
    ttft = None
    usage: dict = {}
    url = endpoint.api_base + "/chat/completions"
    async with client.stream("POST", url, json=body, headers=headers(endpoint), timeout=endpoint.timeout_s) as reply:
        if reply.status_code >= 500 or reply.status_code == 429:
            raise TransientError(f"HTTP {reply.status_code}")
        if reply.status_code != 200:
            await reply.aread()
            raise _FinalError(f"HTTP {reply.status_code}{_error_text(reply)}")
        async for line in reply.aiter_lines():
            chunk = _event(line)
            if chunk is None:
                continue
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                if text and ttft is None:
                    ttft = time.time() - started
                parts.append(text)
    return _Streamed(answer="".join(parts), ttft_s=ttft, prompt_tokens=_count(usage.get("prompt_tokens")),
                     completion_tokens=_count(usage.get("completion_tokens")))


def _event(line: str) -> dict | None:
    if not line.startswith("data:"):
        return None
    data = line[len("data:"):].strip()
    if data == "[DONE]":
        return None
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise _FinalError(f"the stream sent a line that is not JSON ({data[:60]!r})") from None
    if not isinstance(chunk, dict):
        raise _FinalError("the stream sent a chunk that is not a JSON object")
    return chunk


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _describe(err: BaseException) -> str:
    if isinstance(err, (asyncio.TimeoutError, httpx.TimeoutException)):
        return "timed out"
    if isinstance(err, httpx.ConnectError):
        return "connection refused or host unreachable"
    return str(err) or type(err).__name__


def _error_text(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f": {str(message)[:120]}"
