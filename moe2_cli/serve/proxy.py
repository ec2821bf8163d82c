"""One completion request through the selection: route, expert calls with fallback (or one
expert's stream passed through), aggregation, and the request's latency, tokens and estimated
energy against its budgets.

The proxy knows nothing of HTTP framing (that is :mod:`moe2_cli.serve.app`); it turns a parsed
request into a :class:`Reply` or a :class:`Streamed`, keeps the counters ``/metrics`` shows and
hands each request's account to the request log, if there is one.
The reply is the answering expert's own (tool calls, finish reason, logprobs, usage), under the
served model's name, with a ``moe2`` field saying who answered, the category and where it came
from, and whether the conversation's expert was kept (stickiness).

Each request has a deadline (``deadline_s``, shortened by a client that will not wait so long);
each expert call is bounded by it, by the expert's own timeout and by the time-to-first-byte
limit. A failed call counts against the expert's circuit breaker, and an expert held open is
skipped for the next in the ranking. When no expert answers: 503 if every one was held open,
504 if the deadline passed, else 502.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace

from moe2_cli.scenario.caps import token_caps
from moe2_cli.serve import DEFAULT_ROUTE_ON
from moe2_cli.serve.aggregate import combine
from moe2_cli.serve.baseline import Savings
from moe2_cli.serve.batching import RouteBatcher
from moe2_cli.serve.breaker import Breaker, BreakerSettings
from moe2_cli.serve.capping import capped_body
from moe2_cli.serve.categories import CategoryPolicy
from moe2_cli.serve.chunks import Relabel, error_event, told_as_chunks
from moe2_cli.serve.companion import Companion
from moe2_cli.serve.dispatch import Dispatch, dispatch
from moe2_cli.serve.energy import Power
from moe2_cli.serve.intake import CHAT, Asked, Intake
from moe2_cli.serve.metrics import Metrics
from moe2_cli.serve.plan import Plan
from moe2_cli.serve.requestlog import RequestLog, Served, entry
from moe2_cli.serve.routing import Pick, Route
from moe2_cli.serve.sessions import Sessions, steer
from moe2_cli.serve.streams import Opened, open_stream, whole_answer
from moe2_cli.serve.upstream import (
    DEFAULT_MAX_REPLY_BYTES,
    Answer,
    Bounds,
    ClientError,
    Pools,
    Target,
    UpstreamFailure,
)

EXPERTS_HEADER = "X-Moe2-Experts"
# Failures that close an expert's call before its reply ended because time ran out, by reason.
_CUT_BY = {"timeout": "deadline", "deadline": "deadline", "ttft_timeout": "ttft"}
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict
    experts: tuple[str, ...] = ()
    category: str | None = None  # the request's, given or inferred
    retry_after_s: float | None = None  # a 503's advice: when an expert may be tried again
    # With --log-text, the first choice of every other expert that answered, for scoring.
    other_answers: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Streamed:
    """A reply sent as server-sent events; its status is 200."""

    events: AsyncIterator[str]
    experts: tuple[str, ...]
    category: str | None = None


@dataclass
class ExpertState:
    calls: int = 0
    failures: int = 0
    last_error: str | None = None


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def json_log(event: str, **fields) -> None:
    """One JSON line on stderr: operators grep and ship these."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
    print(json.dumps(record, sort_keys=True), file=sys.stderr, flush=True)


@dataclass
class Proxy:
    plan: Plan
    targets: dict[str, Target]
    aggregate: str = "top"
    fallbacks: int = 2
    ttft_s: float | None = None  # longest wait for an expert's first byte (a stream's first event)
    deadline_s: float | None = None  # a request's whole time, fallbacks included (None: every call's limit, in a row)
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    breaker_settings: BreakerSettings = field(default_factory=BreakerSettings)
    clock: Callable[[], float] = time.monotonic  # the breakers' clock
    log: Callable[..., None] = json_log
    metrics: Metrics = field(default_factory=Metrics)
    category_policy: CategoryPolicy = field(default_factory=CategoryPolicy)
    route_on: str = DEFAULT_ROUTE_ON
    sessions: Sessions | None = None  # None: no stickiness
    request_log: RequestLog | None = None  # None: no line per request
    companions: list[Companion] = field(default_factory=list)  # shadow traffic, plan reloads
    feedback_log: RequestLog | None = None  # where POST /v1/feedback writes (with --log)
    savings: Savings | None = None  # None: no baseline to count savings against
    power: Power = field(default_factory=Power)  # the servers' meters (none: only estimates)
    max_tokens: dict[str | None, int] = field(default_factory=dict)  # --max-tokens, over the scenario's caps
    states: dict[str, ExpertState] = field(init=False)
    breaker: Breaker = field(init=False)
    pools: Pools = field(default_factory=Pools)
    router: RouteBatcher = field(init=False)

    def __post_init__(self) -> None:
        if self.category_policy.kind == "infer" and self.plan.classifier is None:
            raise ValueError("the category policy infers categories, but the plan has no category classifier")
        self.router = RouteBatcher(self.plan)
        self.states = {e: ExpertState() for e in self.targets}
        self.breaker = Breaker(self.targets, self.breaker_settings, self.clock)
        if self.deadline_s is None:  # time for the slowest chain: the first round and every fallback
            self.deadline_s = max((t.timeout_s for t in self.targets.values()), default=60.0) * (1 + self.fallbacks)
        self.metrics.expert_state.sample = self._breaker_states
        if self.request_log is not None:
            self.metrics.log_lines.sample = self.request_log.counts
        self.power.attach(self.metrics, self.deadline_s or 0.0)
        for companion in self.companions:
            self.metrics.extra.extend(companion.families())

    def attach(self, companion: Companion) -> None:
        self.companions.append(companion)
        self.metrics.extra.extend(companion.families())

    def swap(self, plan: Plan, targets: dict[str, Target]) -> None:
        """Serve ``plan`` from the next request on (call it on the event loop): a request routed
        already finishes on the plan it was routed by, its experts' targets and breakers kept.
        The scenario must be the one served: its name, categories and experts."""
        for expert in targets:
            self.states.setdefault(expert, ExpertState())
        self.breaker.add(targets)
        self.targets = {**self.targets, **targets}
        self.plan, self.router = plan, RouteBatcher(plan)

    @property
    def serving(self) -> dict[str, Target]:
        """The targets of the experts of S (``targets`` keeps those of an earlier S too)."""
        return {e: self.targets[e] for e in self.plan.selection}

    def draining(self) -> None:
        for companion in self.companions:
            companion.drain()

    def _breaker_states(self) -> dict[tuple[tuple[str, str], ...], float]:
        return {(("expert", e),): float(s) for e, s in self.breaker.states().items()}

    @property
    def intake(self) -> Intake:
        """How this server reads a request into a query."""
        return Intake(self.plan.scenario.instance.categories, self.category_policy, self.route_on)

    @property
    def model_name(self) -> str:
        return self.plan.scenario.name

    @property
    def fingerprint(self) -> str:
        """Stands in for an expert's missing ``system_fingerprint``: changes with what is served."""
        served = f"{self.model_name}|{self.plan.mask}|{self.plan.k}|{self.aggregate}"
        return "fp_moe2_" + hashlib.sha256(served.encode()).hexdigest()[:10]

    async def start(self) -> None:
        """What runs beside the requests while the server serves."""
        self.power.run()

    async def close(self) -> None:
        await self.pools.aclose()
        await self.power.aclose()  # the lines still waiting for their joules go to the log first
        for log in (self.request_log, self.feedback_log):  # a writer drains its queue and flushes: off the event loop
            if log is not None:
                await asyncio.to_thread(log.close)

    async def complete(self, asked: Asked, patience_s: float | None = None) -> Reply | Streamed:
        """The reply to ``asked``; ``patience_s`` is how long the client said it will wait (it
        shortens the deadline of a whole reply; a stream's client reads as it goes)."""
        started = time.perf_counter()
        self.power.begin()
        ends_at, client_cut = self._deadline(None if asked.stream else patience_s)
        route = await self.router.route(asked.query)
        # The routed query carries the category inferred for a request that named none.
        asked, route = self._steered(replace(asked, query=route.query), route)
        asked = self._capped(asked)
        self.metrics.categories.inc((("category", str(asked.query.category)), ("source", asked.query.category_source)))
        reply = await self._routed(asked, route, started, ends_at, client_cut)
        return replace(reply, category=asked.query.category)

    async def _routed(self, asked: Asked, route: Route, started: float, ends_at: float,
                      client_cut: bool) -> Reply | Streamed:
        if asked.stream and (self.aggregate == "top" or len(route.chosen) == 1 or asked.n > 1):
            return await self._stream(asked, route, started, ends_at)
        self.metrics.in_flight.inc((), 1)
        waiting = time.perf_counter()
        try:
            done = await dispatch(route, lambda pick: self._call(pick, asked, self._bounds(pick, ends_at, client_cut)),
                                  self.fallbacks, self._allow, lambda: ends_at - time.monotonic())
        finally:
            self.metrics.in_flight.inc((), -1)
        upstream_s = time.perf_counter() - waiting
        reply = self._reply(asked, done, upstream_s=upstream_s, ends_at=ends_at)
        latency_s = time.perf_counter() - started
        self._account(asked, done.called, reply.status, latency_s, self._served(asked, reply, latency_s, upstream_s))
        if asked.stream and reply.status == 200:
            events = told_as_chunks(reply.body, asked.wants_usage, chat=asked.endpoint == CHAT)
            return Streamed(_replay(events), reply.experts)
        return reply

    def _capped(self, asked: Asked) -> Asked:
        """The request with its token limit clamped to its category's cap (read from the plan
        served now: a reloaded scenario brings its own caps)."""
        scenario = self.plan.scenario
        caps = token_caps(scenario.instance.categories, scenario.max_tokens, self.max_tokens)
        cap = caps[str(asked.query.category)]  # a routed query always has a category
        return replace(asked, body=capped_body(asked.body, asked.endpoint, cap))

    def _deadline(self, patience_s: float | None) -> tuple[float, bool]:
        """When the request must be answered by (``time.monotonic()``), and whether that is the
        client's patience rather than the server's deadline."""
        limit = self.deadline_s or math.inf
        client_cut = patience_s is not None and patience_s < limit
        return time.monotonic() + (patience_s if client_cut and patience_s is not None else limit), client_cut

    def _bounds(self, pick: Pick, ends_at: float, client_cut: bool) -> Bounds:
        """One call's bounds: the request's deadline or the expert's own timeout, if sooner."""
        own = time.monotonic() + self.targets[pick.expert].timeout_s
        return Bounds(ends_at=min(ends_at, own), first_s=self.ttft_s, max_bytes=self.max_reply_bytes,
                      client_cut=client_cut and ends_at <= own)

    def _allow(self, pick: Pick) -> bool:
        return self.breaker.allow(pick.expert)

    # ------------------------------------------------------------------ whole replies

    async def _call(self, pick: Pick, asked: Asked, bounds: Bounds) -> Answer:
        self._called(pick.expert)
        target = self.targets[pick.expert]
        try:
            answer = await whole_answer(self.pools.client(target), target, asked.body, bounds, endpoint=asked.endpoint,
                                        n=asked.n, request_id=asked.query.id)
        except BaseException as err:
            self._failed(pick.expert, err)
            raise
        self._answered(pick.expert, asked.query.category, answer.usage, answer.latency_s)
        return answer

    def _reply(self, asked: Asked, done: Dispatch, upstream_s: float, ends_at: float) -> Reply:
        """The reply; ``upstream_s`` is the time spent waiting for the experts, so a client can
        tell the proxy's own share of the latency."""
        failed = _failures(done)
        if not done.answered:
            return self._no_answer(asked, done, failed, ends_at)
        combined = combine(done.answered, self.aggregate, asked.n)
        self._remember(asked, combined.source.expert)
        experts = tuple(p.expert for p, _ in done.answered)
        body = {**combined.answer.reply, "id": self._completion_id(asked), "model": self.model_name}
        if not body.get("system_fingerprint"):
            body["system_fingerprint"] = self.fingerprint
        body["moe2"] = {**_about(asked), "experts": list(experts),
                        "answer_from": combined.source.expert, "aggregate": combined.how, "note": combined.note,
                        "votes": combined.votes, "weights": combined.weights, "failed": failed,
                        "skipped": [p.expert for p in done.skipped],
                        "upstream_s": round(upstream_s, 6), "tokens_spent": summed_usage(a.usage for _, a in
                                                                                         done.answered)}
        others = tuple((p.expert, choice_text(a.reply["choices"][0]) if a.reply.get("choices") else None)
                       for p, a in done.answered if p.expert != combined.source.expert) if self._logs_text else ()
        return Reply(status=200, body=body, experts=experts, other_answers=others)

    def _no_answer(self, asked: Asked, done: Dispatch, failed: list[dict], ends_at: float) -> Reply:
        """The first refusal, as the expert gave it (the client's mistake); else a 503 when every
        expert was held open by its breaker, a 504 when the deadline passed, a 502 otherwise."""
        if done.refused:
            pick, refusal = done.refused[0]
            return Reply(status=refusal.status, body={**refusal.body, "moe2": {
                **_about(asked), "refused_by": pick.expert, "failed": failed}})
        moe2 = {**_about(asked), "failed": failed, "skipped": [p.expert for p in done.skipped]}
        if not done.called:
            wait = self.breaker.retry_after()
            payload = error_body(f"every expert of the selection is resting after failures; retry in {wait:.0f} s",
                                 "upstream_error", "experts_resting")
            return Reply(status=503, body={**payload, "moe2": moe2}, retry_after_s=wait)
        tried = "; ".join(f"{f['expert']}: {f['reason']}" for f in failed)
        if time.monotonic() >= ends_at:
            payload = error_body(f"no expert of the selection answered before the deadline ({tried})",
                                 "upstream_error", "deadline_exceeded")
            return Reply(status=504, body={**payload, "moe2": moe2})
        payload = error_body(f"no expert of the selection answered ({tried})", "upstream_error",
                             "experts_unavailable")
        return Reply(status=502, body={**payload, "moe2": moe2})

    def _completion_id(self, asked: Asked) -> str:
        return f"{'chatcmpl' if asked.endpoint == CHAT else 'cmpl'}-moe2-{uuid.uuid4().hex}"

    # ------------------------------------------------------------------ streams passed through

    async def _stream(self, asked: Asked, route: Route, started: float, ends_at: float) -> Reply | Streamed:
        """The highest-weight expert's stream, relayed as it arrives. Until its first event the
        next expert in the ranking may stand in; after it, a failure ends the stream."""
        self.metrics.in_flight.inc((), 1)
        done = Dispatch()
        waiting = time.perf_counter()
        try:
            opened = await self._open_first(asked, [*route.chosen, *route.fallbacks], done, ends_at)
        except BaseException:
            self.metrics.in_flight.inc((), -1)
            raise
        if opened is None:
            self.metrics.in_flight.inc((), -1)
            reply = self._no_answer(asked, done, _failures(done), ends_at)
            self._account(asked, done.called, reply.status, time.perf_counter() - started,
                          Served(upstream_s=time.perf_counter() - waiting))
            return reply
        ttft_s = time.perf_counter() - started
        pick = done.called[-1]
        self._remember(asked, pick.expert)
        relabel = Relabel(id=self._completion_id(asked), model=self.model_name, wants_usage=asked.wants_usage,
                          moe2={**_about(asked), "experts": [pick.expert],
                                "answer_from": pick.expert, "aggregate": "top", "failed": _failures(done)},
                          texts={} if self._logs_text else None)
        return Streamed(self._relay(asked, opened, relabel, done, started, waiting, ttft_s), (pick.expert,))

    async def _open_first(self, asked: Asked, candidates: list[Pick], done: Dispatch, ends_at: float) -> Opened | None:
        """The first candidate's stream that opens; experts held open are skipped, and at most
        ``fallbacks`` failures are replaced while the deadline has time left."""
        for pick in candidates:
            if len(done.failed) > self.fallbacks or time.monotonic() >= ends_at:
                break
            if not self.breaker.allow(pick.expert):
                done.skipped.append(pick)
                continue
            done.called.append(pick)
            self._called(pick.expert)
            target = self.targets[pick.expert]
            try:
                opened = await open_stream(self.pools.client(target), target, asked.body,
                                           self._bounds(pick, ends_at, False), endpoint=asked.endpoint,
                                           request_id=asked.query.id)
            except ClientError as err:
                self._failed(pick.expert, err)
                done.refused.append((pick, err))
                return None
            except UpstreamFailure as err:
                self._failed(pick.expert, err)
                done.failed.append((pick, err))
                continue
            except BaseException:
                self.power.ended(pick.expert)
                self.breaker.abandoned(pick.expert)
                self._cancelled(pick.expert, "abandoned")
                raise
            self.breaker.succeeded(pick.expert)  # it answers: a probe that opens a stream closes the breaker
            return opened
        return None

    async def _relay(self, asked: Asked, opened: Opened, relabel: Relabel, done: Dispatch,
                     started: float, waiting: float, ttft_s: float) -> AsyncIterator[str]:
        """The stream relayed; from ``waiting``, when the experts were first asked, the request's
        time is the expert's (relaying included)."""
        expert = opened.target.expert
        rest = opened.rest()
        try:
            first = relabel(opened.first)
            if first:
                yield first
            async for data in rest:
                out = relabel(data)
                if out:
                    yield out
        except UpstreamFailure as err:
            self._failed(expert, err)
            yield error_event(f"{expert} failed after the stream began ({err.reason})", "upstream_error",
                              "expert_failed")
        except BaseException:  # the client left mid-stream: the expert's stream is closed below
            self._cancelled(expert, "abandoned")
            raise
        else:
            self._answered(expert, asked.query.category, relabel.usage, time.perf_counter() - started)
        finally:
            await rest.aclose()
            await opened.aclose()
            self.metrics.in_flight.inc((), -1)
            served = Served(answer_from=expert, usage=relabel.usage, tokens_spent=summed_usage([relabel.usage]),
                            ttft_s=ttft_s, answer=relabel.answer(), completion_id=relabel.id,
                            upstream_s=time.perf_counter() - waiting)
            self._account(asked, done.called, 200, time.perf_counter() - started, served)

    # ------------------------------------------------------------------ sessions

    def _steered(self, asked: Asked, route: Route) -> tuple[Asked, Route]:
        """The route, sent to the conversation's expert when stickiness is on and that expert
        is in S and did not fail its last call (a failed one is not waited for: the router
        decides, and the expert that answers keeps the conversation)."""
        if self.sessions is None or asked.session is None:
            return asked, route
        expert = self.sessions.expert(asked.session)
        healthy = expert in self.states and not self.breaker.in_a_row(expert)
        steered = steer(route, expert) if expert is not None and healthy else None
        if steered is None:
            return asked, route
        route, stuck = steered
        self.metrics.sticky.inc((("outcome", "overrode" if stuck.overrode else "agreed"),))
        return replace(asked, sticky=stuck), route

    def _remember(self, asked: Asked, expert: str) -> None:
        if self.sessions is not None and asked.session is not None:
            self.sessions.remember(asked.session, expert)

    # ------------------------------------------------------------------ counting

    def _called(self, expert: str) -> None:
        self.power.called(expert)
        self.states[expert].calls += 1
        self.metrics.expert_calls.inc((("expert", expert),))

    def _answered(self, expert: str, category: str | None, usage: dict, latency_s: float) -> None:
        # A routed query's category is never None: routing infers it or refuses the query.
        self.power.ended(expert)
        self.breaker.succeeded(expert)
        self.metrics.expert_latency.observe((("expert", expert),), latency_s)
        spent = summed_usage([usage])
        for kind in ("prompt", "completion"):
            self.metrics.tokens.inc((("category", str(category)), ("type", kind)), spent[f"{kind}_tokens"])

    def _cancelled(self, expert: str, reason: str) -> None:
        self.metrics.upstream_cancelled.inc((("expert", expert), ("reason", reason)))

    def _failed(self, expert: str, err: BaseException) -> None:
        self.power.ended(expert)
        if isinstance(err, ClientError):  # the request's fault, not the expert's: it is alive
            self.breaker.succeeded(expert)
            self.metrics.client_errors.inc((("expert", expert), ("status", str(err.status))))
            return
        kind = getattr(err, "kind", "internal")
        cut = "abandoned" if not isinstance(err, Exception) else _CUT_BY.get(kind)
        if cut is not None:
            self._cancelled(expert, cut)
        if not isinstance(err, Exception) or kind == "deadline":
            # Cancelled (the client left, or another answer made it moot) or cut short by the
            # client's own timeout: nothing is known of the expert, and a client must not be
            # able to open breakers by asking for a tiny timeout.
            self.breaker.abandoned(expert)
            return
        self.breaker.failed(expert)
        state = self.states[expert]
        state.failures += 1
        state.last_error = getattr(err, "reason", type(err).__name__)
        self.metrics.expert_failures.inc((("expert", expert), ("kind", kind)))

    @property
    def _logs_text(self) -> bool:
        return self.request_log is not None and self.request_log.with_text

    def _served(self, asked: Asked, reply: Reply, latency_s: float, upstream_s: float) -> Served:
        """A whole reply, for the log; a stream told from it has its first token at the end."""
        moe2, usage = reply.body.get("moe2", {}), reply.body.get("usage")
        answer = [choice_text(choice) for choice in reply.body.get("choices", [])] if self._logs_text else None
        return Served(answer_from=moe2.get("answer_from"), usage=usage if isinstance(usage, dict) else None,
                      tokens_spent=moe2.get("tokens_spent"), ttft_s=latency_s if asked.stream else None,
                      answer=answer if reply.status == 200 else None,
                      completion_id=reply.body.get("id") if reply.status == 200 else None, upstream_s=upstream_s,
                      other_answers=dict(reply.other_answers) if self._logs_text and reply.status == 200 else None)

    def _account(self, asked: Asked, called: list[Pick], status: int, latency_s: float, served: Served) -> None:
        """Count the request, check its latency and estimated energy against the budgets, and
        log it (once its measured joules are known)."""
        query, inst, budgets = asked.query, self.plan.scenario.instance, self.plan.budgets
        c = inst.categories.index(query.category)
        energy_j = {p.expert: float(inst.energy_j[p.index, c]) for p in called}
        energy = sum(energy_j.values())
        category = (("category", query.category),)
        self.metrics.requests.inc((*category, ("status", str(status))))
        self.metrics.latency.observe(category, latency_s)
        self.metrics.energy.inc(category, energy)
        self.metrics.overhead.observe(category, max(0.0, latency_s - served.upstream_s))
        for expert, joules in energy_j.items():
            self.metrics.expert_energy.inc((("expert", expert), ("source", "estimated")), joules)
        checks = (("latency", latency_s, budgets.latency_s[c]), ("energy", energy, budgets.energy_j[c]))
        overruns = [{"resource": r, "used": round(used, 6), "budget": cap} for r, used, cap in checks
                    if cap is not None and used > cap]
        for over in overruns:
            self.metrics.overruns.inc((*category, ("resource", over["resource"])))
            self.log("budget_overrun", request=query.id, category=query.category, **over, experts=list(energy_j))
        against = {} if self.savings is None else self.savings.account(self.metrics, c, [p.index for p in called],
                                                                        status, energy)
        record = None if self.request_log is None else {
            **entry(asked, status, latency_s, energy_j, overruns, served, self._logs_text), **against}
        self.power.settle(list(energy_j), record, None if self.request_log is None else self.request_log.write)
        if status == 200:
            for companion in self.companions:
                companion.answered(asked, called)


def _about(asked: Asked) -> dict:
    """The ``moe2`` field's account of the request: its category, where that came from (and the
    classifier's probability, when inferred), and the conversation's expert kept, if any."""
    query, stuck, probability = asked.query, asked.sticky, asked.query.category_probability
    return {"category": query.category, "category_source": query.category_source,
            "category_probability": None if probability is None else round(probability, 4),
            "sticky": None if stuck is None else {"expert": stuck.expert, "overrode_router": stuck.overrode}}


def choice_text(choice: dict) -> str | None:
    """A choice's text: a chat message's content or a completion's text."""
    message = choice.get("message")
    return message.get("content") if isinstance(message, dict) else choice.get("text")


def _failures(done: Dispatch) -> list[dict]:
    failed = [{"expert": p.expert, "reason": f.reason, "kind": f.kind} for p, f in done.failed]
    return failed + [{"expert": p.expert, "reason": f"HTTP {e.status}", "kind": "client"} for p, e in done.refused]


async def _replay(events: list[str]) -> AsyncIterator[str]:
    for item in events:
        yield item


def summed_usage(usages: Iterable[dict]) -> dict:
    total = dict.fromkeys(USAGE_KEYS, 0)
    for usage in usages:
        for key in total:
            value = usage.get(key)
            total[key] += value if isinstance(value, int) and not isinstance(value, bool) else 0
    return total
