"""Calls to the experts' OpenAI-compatible servers, over one shared ``httpx.AsyncClient``.

Each expert is reached at its server's ``endpoint`` with its served model id, a per-endpoint
timeout and, when ``api_key_env`` names a variable, its bearer key. Keys are read once at start
and never appear in a message, a log line or an error.

A call is bounded in time and size whatever the expert does (:class:`Bounds`): its first byte
must come within the time-to-first-byte limit, the whole reply by an absolute deadline, however
slowly it drips, and the reply is read no further than a byte cap and parsed no deeper than a
nesting limit. Past any of them the call is an :class:`UpstreamFailure` another expert may mend.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from moe2_cli.errors import Diagnostic, InputError, Moe2Error
from moe2_cli.scenario.scenario import Scenario
from moe2_cli.serve import DEFAULT_MAX_REPLY_BYTES
from moe2_cli.serve.requests import MalformedJSON, parse_json

# Fields of a client request that only the proxy acts on, or that would change the upstream's reply format.
_PROXY_ONLY = ("model", "stream", "stream_options", "metadata", "extra_body", "timeout")
# Upstream statuses that blame the request, not the expert: they go back to the client as they are.
CLIENT_ERRORS = frozenset({400, 404, 413, 422})
_ERROR_TEXT_LIMIT = 2000  # characters of a non-JSON error body kept for the client
CONNECT_S = 5.0  # a loopback or LAN expert connects in milliseconds; a blackholed one never does
# Compressed replies are refused: a small gzip body can inflate a thousandfold past the byte cap.
_UPSTREAM_HEADERS = {"Accept-Encoding": "identity"}


@dataclass(frozen=True)
class Target:
    """Where one expert answers."""

    expert: str
    api_base: str
    model_id: str
    timeout_s: float
    api_key: str | None = None
    stream: bool = False  # a whole reply too is asked for as a stream (the endpoint's stream_upstream)

    def __repr__(self) -> str:  # the key stays out of every repr, log line and message
        return (f"Target({self.expert!r}, {self.api_base!r}, {self.model_id!r}, timeout_s={self.timeout_s:g}"
                f"{', stream=True' if self.stream else ''})")


@dataclass(frozen=True)
class Answer:
    """One expert's whole reply, as it came (checked to be a completion with ``n`` choices)."""

    reply: dict
    latency_s: float

    @property
    def usage(self) -> dict:
        usage = self.reply.get("usage")
        return usage if isinstance(usage, dict) else {}

    @property
    def kind(self) -> str:
        """What the first choice is: "tool_calls", "refusal" or "text"; only texts are voted on."""
        choice = self.reply["choices"][0]
        message = choice.get("message")
        if message is None:  # a text completion
            return "text"
        if message.get("tool_calls"):
            return "tool_calls"
        return "text" if isinstance(message.get("content"), str) else "refusal"

    @property
    def text(self) -> str:
        choice = self.reply["choices"][0]
        message = choice.get("message")
        return choice["text"] if message is None else message.get("content") or ""


@dataclass(frozen=True)
class Bounds:
    """How long and how much one call may take: its reply complete by ``ends_at``
    (``time.monotonic()``), its first byte within ``first_s`` seconds, at most ``max_bytes`` read.
    ``client_cut``: ``ends_at`` is the client's own patience, not the expert's limit, so running
    out of it is not the expert's failure."""

    ends_at: float
    first_s: float | None = None
    max_bytes: int = DEFAULT_MAX_REPLY_BYTES
    client_cut: bool = False

    def left(self) -> float:
        return self.ends_at - time.monotonic()

    def first_within(self) -> tuple[float, bool]:
        """Seconds the first byte may take, and whether that is the time-to-first-byte limit
        (rather than what is left of the whole)."""
        left = self.left()
        if self.first_s is not None and self.first_s < left:
            return self.first_s, True
        return left, False

    def late(self, expert: str) -> UpstreamFailure:
        if self.client_cut:
            return UpstreamFailure(expert, "the client's timeout passed", "deadline")
        return UpstreamFailure(expert, "reply not complete by the deadline", "timeout")


class UpstreamFailure(Moe2Error):
    """An expert did not answer: refused, timed out, an HTTP error or a malformed reply."""

    def __init__(self, expert: str, reason: str, kind: str):
        super().__init__(f"{expert}: {reason}")
        self.expert, self.reason, self.kind = expert, reason, kind


class ClientError(Moe2Error):
    """An expert refused the request itself (400, 404, 413, 422): the client's mistake, which
    no other expert would fix. ``body`` is the upstream's OpenAI-style error object."""

    def __init__(self, expert: str, status: int, body: dict):
        super().__init__(f"{expert}: HTTP {status}")
        self.expert, self.status, self.body = expert, status, body


def targets_for(scenario: Scenario, experts: list[str], timeout_s: float | None = None,
                environ: Mapping[str, str] = os.environ) -> dict[str, Target]:
    """A target for each expert; every one needs an ``endpoint`` and its key variable set."""
    inst = scenario.instance
    out, problems = {}, []
    for expert in experts:
        i = inst.expert_ids.index(expert)
        server, llm = inst.server_names[inst.expert_server[i]], inst.expert_llms[i]
        endpoint = scenario.endpoints.get(server)
        if endpoint is None:
            problems.append(f"server {server!r} has no endpoint block: add one to serve {expert}")
            continue
        key = None
        if endpoint.api_key_env:
            key = environ.get(endpoint.api_key_env)
            if not key:
                problems.append(f"{server}.endpoint.api_key_env names {endpoint.api_key_env}, which is not set")
                continue
        out[expert] = Target(expert=expert, api_base=endpoint.api_base, model_id=endpoint.model_id(llm),
                             timeout_s=timeout_s or endpoint.timeout_s, api_key=key, stream=endpoint.stream_upstream)
    if problems:  # the scenario is where they are fixed
        raise InputError([Diagnostic(str(scenario.path), None, None, p) for p in problems])
    return out


UPSTREAM_KEEP_ALIVE_S = 2.0


class Pools:
    """One ``httpx.AsyncClient`` per expert server. httpx scans a pool's connections on every
    request, so a pool per server stays small and cheap under load."""

    def __init__(self, max_connections: int = 128):
        # Idle connections are dropped before common servers drop them (uvicorn and others after
        # 5 s), so a connection is not reused just as the server closes it.
        self.limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                   keepalive_expiry=UPSTREAM_KEEP_ALIVE_S)
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, target: Target) -> httpx.AsyncClient:
        if target.api_base not in self._clients:
            # No proxies from the environment: a loopback expert is never sent through one.
            self._clients[target.api_base] = httpx.AsyncClient(limits=self.limits, trust_env=False)
        return self._clients[target.api_base]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def upstream_body(body: dict, target: Target, stream: bool = False) -> dict:
    """The client's request for one expert: its model id; a stream always carries usage, so the
    tokens it spends are counted (the proxy drops them when the client did not ask)."""
    out = {**{k: v for k, v in body.items() if k not in _PROXY_ONLY}, "model": target.model_id, "stream": stream}
    if stream:
        out["stream_options"] = {"include_usage": True}
    return out


def headers_for(target: Target, request_id: str | None) -> dict[str, str]:
    headers = {**_UPSTREAM_HEADERS, **({"Authorization": f"Bearer {target.api_key}"} if target.api_key else {})}
    return {**headers, "X-Request-Id": request_id} if request_id else headers


async def send(client: httpx.AsyncClient, target: Target, body: dict, bounds: Bounds, *, endpoint: str,
               stream: bool, request_id: str | None) -> httpx.Response:
    """The expert's response with its headers read, within the time-to-first-byte limit; the
    body is left to read (and the response to close) by the caller."""
    left = bounds.left()
    if left <= 0:
        raise bounds.late(target.expert)
    first_s, is_ttfb = bounds.first_within()
    # httpx's own timeouts only back the deadline up: each of them restarts with every byte.
    request = client.build_request("POST", f"{target.api_base}/{endpoint}", json=upstream_body(body, target, stream),
                                   headers=headers_for(target, request_id),
                                   timeout=httpx.Timeout(left, connect=min(CONNECT_S, left)))
    try:
        return await asyncio.wait_for(client.send(request, stream=True), first_s)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        if is_ttfb:
            raise UpstreamFailure(target.expert, f"no first byte within {first_s:g} s", "ttft_timeout") from None
        raise bounds.late(target.expert) from None
    except httpx.HTTPError as err:
        raise UpstreamFailure(target.expert, f"unreachable ({type(err).__name__})", "unreachable") from None


async def capped(response: httpx.Response, limit: int, expert: str) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, until more than ``limit`` have come: then an
    :class:`UpstreamFailure` (so memory holds at most ``limit`` of one reply)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UpstreamFailure(expert, f"reply of {declared} bytes, over the {limit}-byte cap", "too_large")
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise UpstreamFailure(expert, f"reply over the {limit}-byte cap", "too_large")
            yield chunk
    except httpx.TimeoutException:
        raise UpstreamFailure(expert, "reply stalled", "timeout") from None
    except httpx.HTTPError as err:
        raise UpstreamFailure(expert, f"reply broken ({type(err).__name__})", "unreachable") from None


async def read_capped(response: httpx.Response, limit: int, expert: str) -> bytes:
    return b"".join([chunk async for chunk in capped(response, limit, expert)])


async def complete(client: httpx.AsyncClient, target: Target, body: dict, bounds: Bounds, *,
                   endpoint: str = "chat/completions", n: int = 1, request_id: str | None = None) -> Answer:
    """One whole completion from one expert, within ``bounds``: a :class:`ClientError` when the
    upstream blames the request, an :class:`UpstreamFailure` for anything else that is not a
    completion."""
    started = time.perf_counter()
    left = bounds.left()
    try:
        status, content = await asyncio.wait_for(_fetch(client, target, body, bounds, endpoint, request_id),
                                                 max(left, 0.0))
    except asyncio.TimeoutError:
        raise bounds.late(target.expert) from None
    latency = time.perf_counter() - started
    if status != 200:
        raise refusal(target, status, content)
    try:
        reply = parse_json(content)
    except MalformedJSON as err:
        raise UpstreamFailure(target.expert, f"malformed reply ({err})", "malformed") from None
    problem = reply_problem(reply, chat=endpoint == "chat/completions", n=n)
    if problem:
        raise UpstreamFailure(target.expert, f"malformed reply ({problem})", "malformed")
    return Answer(reply=reply, latency_s=latency)


async def _fetch(client: httpx.AsyncClient, target: Target, body: dict, bounds: Bounds, endpoint: str,
                 request_id: str | None) -> tuple[int, bytes]:
    response = await send(client, target, body, bounds, endpoint=endpoint, stream=False, request_id=request_id)
    try:
        return response.status_code, await read_capped(response, bounds.max_bytes, target.expert)
    finally:
        await response.aclose()


def refusal(target: Target, status: int, content: bytes) -> ClientError | UpstreamFailure:
    """What a non-200 status means: the client's mistake (with the upstream's error, kept for
    the client) or the expert's failure (401, 403, 429, 5xx: another expert may answer)."""
    if status not in CLIENT_ERRORS:
        return UpstreamFailure(target.expert, f"HTTP {status}", "http")
    try:
        body = parse_json(content)
    except MalformedJSON:
        body = None
    if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
        text = content.decode("utf-8", "replace")[:_ERROR_TEXT_LIMIT] or f"HTTP {status}"
        body = {"error": {"message": text, "type": "invalid_request_error", "param": None, "code": None}}
    return ClientError(target.expert, status, body)


def reply_problem(reply: object, *, chat: bool, n: int) -> str | None:
    """Why ``reply`` is not a completion with ``n`` choices, or None when it is one."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        return "no choices"
    if len(choices) < n:
        return f"{len(choices)} choice(s) where n={n} were asked for"
    for choice in choices:
        if not chat:
            if not isinstance(choice.get("text"), str):
                return "a choice without text"
            continue
        message = choice.get("message")
        if not isinstance(message, dict):
            return "a choice without a message"
        content = message.get("content")
        if not (isinstance(content, str) or message.get("tool_calls") or isinstance(message.get("refusal"), str)):
            return "a message without content, tool calls or refusal"
    return None


async def probe(client: httpx.AsyncClient, target: Target, timeout_s: float = 2.0) -> str | None:
    """None when the expert's server lists models, else why not (for ``/readyz``)."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    try:
        response = await client.get(f"{target.api_base}/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as err:
        return f"unreachable ({type(err).__name__})"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"
