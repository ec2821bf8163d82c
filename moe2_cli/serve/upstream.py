"""Calls to the experts' OpenAI-compatible servers, over one shared ``httpx.AsyncClient``.

Each expert is reached at its server's ``endpoint`` with its served model id, a per-endpoint
timeout and, when ``api_key_env`` names a variable, its bearer key. Keys are read once at start
and never appear in a message, a log line or an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from moe2_cli.errors import Diagnostic, InputError, Moe2Error
from moe2_cli.scenario.scenario import Scenario

# Fields of a client request that only the proxy acts on, or that would change the upstream's reply format.
_PROXY_ONLY = ("model", "stream", "stream_options", "metadata")


@dataclass(frozen=True)
class Target:
    """Where one expert answers."""

    expert: str
    api_base: str
    model_id: str
    timeout_s: float
    api_key: str | None = None

    def __repr__(self) -> str:  # the key stays out of every repr, log line and message
        return f"Target({self.expert!r}, {self.api_base!r}, {self.model_id!r}, timeout_s={self.timeout_s:g})"


@dataclass(frozen=True)
class Answer:
    text: str
    usage: dict
    latency_s: float


class UpstreamFailure(Moe2Error):
    """An expert did not answer: refused, timed out, an HTTP error or a malformed reply."""

    def __init__(self, expert: str, reason: str, kind: str):
        super().__init__(f"{expert}: {reason}")
        self.expert, self.reason, self.kind = expert, reason, kind


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
                             timeout_s=timeout_s or endpoint.timeout_s, api_key=key)
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


def upstream_body(body: dict, target: Target) -> dict:
    """The client's request for one expert: its model id, non-streaming (answers are aggregated)."""
    return {**{k: v for k, v in body.items() if k not in _PROXY_ONLY}, "model": target.model_id, "stream": False}


async def complete(client: httpx.AsyncClient, target: Target, body: dict) -> Answer:
    """One chat completion from one expert; any failure is an :class:`UpstreamFailure`."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    started = time.perf_counter()
    try:
        response = await client.post(f"{target.api_base}/chat/completions", json=upstream_body(body, target),
                                     headers=headers, timeout=target.timeout_s)
    except httpx.TimeoutException:
        raise UpstreamFailure(target.expert, f"no answer within {target.timeout_s:g} s", "timeout") from None
    except httpx.HTTPError as err:
        raise UpstreamFailure(target.expert, f"unreachable ({type(err).__name__})", "unreachable") from None
    latency = time.perf_counter() - started
    if response.status_code != 200:
        raise UpstreamFailure(target.expert, f"HTTP {response.status_code}", "http")
    try:
        reply = response.json()
        text = reply["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        raise UpstreamFailure(target.expert, "malformed reply", "malformed") from None
    if not isinstance(text, str):
        raise UpstreamFailure(target.expert, "malformed reply (no text content)", "malformed")
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    return Answer(text=text, usage=usage, latency_s=latency)


async def probe(client: httpx.AsyncClient, target: Target, timeout_s: float = 2.0) -> str | None:
    """None when the expert's server lists models, else why not (for ``/healthz``)."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    try:
        response = await client.get(f"{target.api_base}/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as err:
        return f"unreachable ({type(err).__name__})"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"
