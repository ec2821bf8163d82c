"""One chat request through the selection: category, route, concurrent expert calls with
fallback, aggregation, and the request's latency and estimated energy against its budgets.

The proxy knows nothing of HTTP framing (that is :mod:`moe2_cli.serve.app`); it turns a parsed
request body into a :class:`Reply` and keeps the counters ``/metrics`` shows.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from moe2_cli.serve.aggregate import combine
from moe2_cli.serve.batching import RouteBatcher
from moe2_cli.serve.dispatch import Dispatch, dispatch
from moe2_cli.serve.metrics import Metrics
from moe2_cli.serve.plan import Plan
from moe2_cli.serve.queries import Query
from moe2_cli.serve.routing import Pick
from moe2_cli.serve.upstream import Answer, Pools, Target, complete, probe

CATEGORY_HEADER = "x-moe2-category"
EXPERTS_HEADER = "X-Moe2-Experts"


class BadRequest(Exception):
    """The client's request cannot be answered as sent (HTTP 400)."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict
    experts: tuple[str, ...] = ()
    text: str | None = None  # the answer, for streaming


@dataclass
class ExpertState:
    calls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None


def error_body(message: str, kind: str, code: str | None = None) -> dict:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def json_log(event: str, **fields) -> None:
    """One JSON line on stderr: operators grep and ship these."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
    print(json.dumps(record, sort_keys=True), file=sys.stderr, flush=True)


def prompt_text(body: dict) -> str:
    """The last user message's text (string or the parts form); 400 when there is none."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("'messages' must be a non-empty list of message objects")
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        raise BadRequest("a user message's 'content' must be a string or a list of parts")
    raise BadRequest("'messages' has no user message")


@dataclass
class Proxy:
    plan: Plan
    targets: dict[str, Target]
    aggregate: str = "top"
    fallbacks: int = 2
    log: Callable[..., None] = json_log
    metrics: Metrics = field(default_factory=Metrics)
    states: dict[str, ExpertState] = field(init=False)
    pools: Pools = field(default_factory=Pools)
    router: RouteBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.router = RouteBatcher(self.plan)
        self.states = {e: ExpertState() for e in self.targets}

    @property
    def model_name(self) -> str:
        return self.plan.scenario.name

    async def close(self) -> None:
        await self.pools.aclose()

    def category(self, body: dict, header: str | None) -> str:
        """``metadata.category``, else the header, else the scenario's first category."""
        metadata = body.get("metadata")
        chosen = metadata.get("category") if isinstance(metadata, dict) else None
        chosen = chosen or header or self.plan.scenario.instance.categories[0]
        if chosen not in self.plan.scenario.instance.categories:
            raise BadRequest(f"unknown category {chosen!r} (categories: "
                             f"{', '.join(self.plan.scenario.instance.categories)})")
        return chosen

    async def chat(self, body: dict, category_header: str | None = None) -> Reply:
        started = time.perf_counter()
        category = self.category(body, category_header)
        query = Query(id=uuid.uuid4().hex, category=category, text=prompt_text(body))
        route = await self.router.route(query)
        self.metrics.in_flight.inc((), 1)
        waiting = time.perf_counter()
        try:
            done = await dispatch(route, lambda pick: self._call(pick, body), self.fallbacks)
        finally:
            self.metrics.in_flight.inc((), -1)
        reply = self._reply(body, query, done, upstream_s=time.perf_counter() - waiting)
        self._account(query, done, reply.status, time.perf_counter() - started)
        return reply

    async def _call(self, pick: Pick, body: dict) -> Answer:
        state = self.states[pick.expert]
        state.calls += 1
        self.metrics.expert_calls.inc((("expert", pick.expert),))
        try:
            target = self.targets[pick.expert]
            answer = await complete(self.pools.client(target), target, body)
        except Exception as failure:
            kind = getattr(failure, "kind", "internal")
            state.failures += 1
            state.consecutive_failures += 1
            state.last_error = getattr(failure, "reason", type(failure).__name__)
            self.metrics.expert_failures.inc((("expert", pick.expert), ("kind", kind)))
            raise
        state.consecutive_failures = 0
        self.metrics.expert_latency.observe((("expert", pick.expert),), answer.latency_s)
        return answer

    def _reply(self, body: dict, query: Query, done: Dispatch, upstream_s: float) -> Reply:
        """The reply; ``upstream_s`` is the time spent waiting for the experts, so a client can
        tell the proxy's own share of the latency."""
        failed = [{"expert": p.expert, "reason": f.reason} for p, f in done.failed]
        if not done.answered:
            tried = "; ".join(f"{f['expert']}: {f['reason']}" for f in failed)
            payload = error_body(f"no expert of the selection answered ({tried})", "upstream_error",
                                 "experts_unavailable")
            payload["moe2"] = {"category": query.category, "failed": failed}
            return Reply(status=502, body=payload)
        combined = combine(done.answered, self.aggregate)
        experts = tuple(p.expert for p, _ in done.answered)
        payload = {
            "id": f"chatcmpl-moe2-{query.id}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": combined.text}}],
            "usage": _summed_usage(a.usage for _, a in done.answered),
            "moe2": {"category": query.category, "experts": list(experts), "answer_from": combined.source.expert,
                     "aggregate": self.aggregate, "votes": combined.votes, "weights": combined.weights,
                     "failed": failed, "upstream_s": round(upstream_s, 6)},
        }
        return Reply(status=200, body=payload, experts=experts, text=combined.text)

    def _account(self, query: Query, done: Dispatch, status: int, latency_s: float) -> None:
        """Count the request, and check its latency and estimated energy against the budgets."""
        inst, budgets = self.plan.scenario.instance, self.plan.budgets
        c = inst.categories.index(query.category)
        energy = float(sum(inst.energy_j[p.index, c] for p in done.called))
        category = (("category", query.category),)
        self.metrics.requests.inc((*category, ("status", str(status))))
        self.metrics.latency.observe(category, latency_s)
        self.metrics.energy.inc(category, energy)
        checks = (("latency", latency_s, budgets.latency_s[c]), ("energy", energy, budgets.energy_j[c]))
        for resource, used, cap in checks:
            if cap is not None and used > cap:
                self.metrics.overruns.inc((*category, ("resource", resource)))
                self.log("budget_overrun", request=query.id, category=query.category, resource=resource,
                         used=round(used, 6), budget=cap, experts=[p.expert for p in done.called])

    async def health(self) -> dict:
        """Each expert's server probed now, with its call record since start."""
        by_base = {t.api_base: t for t in self.targets.values()}
        probes = (probe(self.pools.client(t), t) for t in by_base.values())
        errors = dict(zip(by_base, await asyncio.gather(*probes)))
        upstreams = {}
        for expert, target in self.targets.items():
            state, error = self.states[expert], errors[target.api_base]
            upstreams[expert] = {"state": "up" if error is None else "down", "error": error,
                                 "calls": state.calls, "failures": state.failures,
                                 "consecutive_failures": state.consecutive_failures,
                                 "last_error": state.last_error}
        ready = any(u["state"] == "up" for u in upstreams.values())
        return {"status": "ready" if ready else "unavailable", "model": self.model_name,
                "selection": self.plan.selection, "top_k": self.plan.k, "upstreams": upstreams}


def _summed_usage(usages) -> dict:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for usage in usages:
        for key in total:
            value = usage.get(key)
            total[key] += value if isinstance(value, int) and not isinstance(value, bool) else 0
    return total
