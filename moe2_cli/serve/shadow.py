"""Shadow traffic: a seeded fraction of the requests answered is sent again, once the client has
its reply, to experts of the fleet the request did not call, and their answers go to the request
log for scoring (``moe2 score``), one line per expert.

Shadow calls run on connections of their own, at most ``concurrency`` at once; a call that finds
no free slot is dropped and counted, never queued. They never touch the circuit breakers, the
route's counters or the budgets, never delay or fail a client's reply, and are cancelled when
the server drains.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moe2_cli.rng import stream
from moe2_cli.scenario.scenario import Scenario
from moe2_cli.serve import DEFAULT_MAX_REPLY_BYTES
from moe2_cli.serve.companion import Companion
from moe2_cli.serve.intake import Asked
from moe2_cli.serve.metrics import Family
from moe2_cli.serve.proxy import choice_text
from moe2_cli.serve.requestlog import RequestLog, Served, entry
from moe2_cli.serve.routing import Pick
from moe2_cli.serve.streams import whole_answer
from moe2_cli.serve.upstream import Bounds, ClientError, Pools, Target, UpstreamFailure

OUTCOMES = ("answered", "failed", "dropped", "cancelled")


@dataclass(frozen=True)
class ShadowSettings:
    """``rate``: the fraction of answered requests shadowed; ``experts``: at most this many
    experts per shadowed request, drawn at random (None: every one it did not call);
    ``concurrency``: shadow calls running at once; ``seed``: the draws."""

    rate: float
    experts: int | None = None
    concurrency: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"the shadow rate must be in [0, 1] (got {self.rate})")
        if self.concurrency < 1 or (self.experts is not None and self.experts < 1):
            raise ValueError("shadow concurrency and experts must be >= 1")


def fleet(scenario: Scenario) -> list[str]:
    """The scenario's experts whose server has an endpoint: the ones a shadow may call."""
    inst = scenario.instance
    return [e for i, e in enumerate(inst.expert_ids) if inst.server_names[inst.expert_server[i]] in scenario.endpoints]


class Picker:
    """Which experts each answered request is shadowed to, drawn from one seeded stream in the
    order requests are answered."""

    def __init__(self, settings: ShadowSettings, experts: Sequence[str]):
        self.settings, self.experts = settings, list(experts)
        self.rng: np.random.Generator = stream(settings.seed, "shadow")

    def pick(self, called: Sequence[str]) -> list[str]:
        if self.rng.random() >= self.settings.rate:
            return []
        outside = [e for e in self.experts if e not in called]
        wanted = self.settings.experts
        if wanted is None or len(outside) <= wanted:
            return outside
        kept = set(self.rng.choice(len(outside), size=wanted, replace=False).tolist())
        return [e for i, e in enumerate(outside) if i in kept]


class Shadow(Companion):
    """Shadow calls to ``targets`` (the fleet's experts), their answers written to ``log``."""

    def __init__(self, settings: ShadowSettings, targets: dict[str, Target], scenario: Scenario, log: RequestLog,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES):
        if not log.with_text:
            raise ValueError("shadow answers are logged for scoring: the request log must keep text")
        self.settings, self.targets, self.log, self.max_reply_bytes = settings, targets, log, max_reply_bytes
        self.instance = scenario.instance
        self.picker = Picker(settings, list(targets))
        self.pools = Pools(max_connections=settings.concurrency)  # never the proxy's: a client never waits for one
        self.running: set[asyncio.Task] = set()
        self.stopping = False
        self.counts = Family("moe2_shadow_requests_total", "Shadow calls (one request sent to one expert outside "
                             "its route), by outcome: answered, failed, dropped (no free slot, or draining) and "
                             "cancelled (the drain).", "counter")
        for outcome in OUTCOMES:
            self.counts.inc((("outcome", outcome),), 0)

    def families(self) -> list[Family]:
        return [self.counts]

    def answered(self, asked: Asked, called: Sequence[Pick]) -> None:
        for expert in self.picker.pick([p.expert for p in called]):
            if self.stopping or len(self.running) >= self.settings.concurrency:
                self._count("dropped")
                continue
            task = asyncio.create_task(self._call(asked, self.targets[expert]))
            self.running.add(task)
            task.add_done_callback(self._done)

    async def start(self) -> None:
        for target in self.targets.values():  # a client's TLS set-up blocks: paid now, not by a request
            self.pools.client(target)

    def drain(self) -> None:
        self.stopping = True
        for task in self.running:
            task.cancel()

    async def stop(self) -> None:
        self.drain()
        await asyncio.gather(*self.running, return_exceptions=True)
        await self.pools.aclose()

    def _done(self, task: asyncio.Task) -> None:
        self.running.discard(task)
        if task.cancelled():
            self._count("cancelled")
        else:  # a call meets only an expert's failure or refusal; anything else is a failed call too
            self._count(task.result() if task.exception() is None else "failed")

    def _count(self, outcome: str) -> None:
        self.counts.inc((("outcome", outcome),))

    async def _call(self, asked: Asked, target: Target) -> str:
        """One shadow call, logged; its outcome. Nothing it meets is raised: the client has its reply."""
        started = time.perf_counter()
        bounds = Bounds(ends_at=time.monotonic() + target.timeout_s, max_bytes=self.max_reply_bytes)
        try:
            answer = await whole_answer(self.pools.client(target), target, asked.body, bounds, endpoint=asked.endpoint,
                                        n=asked.n, request_id=asked.query.id)
        except (ClientError, UpstreamFailure) as err:
            status = err.status if isinstance(err, ClientError) else 502
            self._write(asked, target.expert, status, time.perf_counter() - started, Served(), str(err))
            return "failed"
        texts = [choice_text(choice) for choice in answer.reply["choices"]]
        served = Served(answer_from=target.expert, usage=answer.usage, tokens_spent=answer.usage, answer=texts)
        self._write(asked, target.expert, 200, time.perf_counter() - started, served, None)
        return "answered"

    def _write(self, asked: Asked, expert: str, status: int, latency_s: float, served: Served,
               error: str | None) -> None:
        c = self.instance.categories.index(asked.query.category)
        energy_j = {expert: float(self.instance.energy_j[self.instance.expert_ids.index(expert), c])}
        record = entry(asked, status, latency_s, energy_j, [], served, with_text=True)
        record.update({"id": f"{asked.query.id}/shadow/{expert}", "stream": False, "ttft_s": None, "shadow": True,
                       "shadow_of": asked.query.id, "error": error})
        self.log.write(record)
