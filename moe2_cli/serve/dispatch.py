"""Call a query's top-k experts concurrently; when one fails, the next expert of S in the gate's
ranking takes its place, at most ``fallbacks`` times per request and only while the request's
deadline has time left. An expert its breaker holds open is skipped: the next one in the
ranking stands in for it at once, at no cost to the fallbacks.

An expert that refuses the request itself (a :class:`ClientError`) is not a failure: no other
expert would take it, so no replacement is called after one. The calls already running finish.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from moe2_cli.serve.routing import Pick, Route
from moe2_cli.serve.upstream import Answer, ClientError, UpstreamFailure

Caller = Callable[[Pick], Awaitable[Answer]]


def _always(pick: Pick) -> bool:
    return True


def _forever() -> float:
    return math.inf


@dataclass
class Dispatch:
    """What happened to one request: the experts called, in order, and how each ended."""

    called: list[Pick] = field(default_factory=list)
    answered: list[tuple[Pick, Answer]] = field(default_factory=list)
    failed: list[tuple[Pick, UpstreamFailure]] = field(default_factory=list)
    refused: list[tuple[Pick, ClientError]] = field(default_factory=list)
    skipped: list[Pick] = field(default_factory=list)  # held open by their breaker: not called


async def dispatch(route: Route, call: Caller, fallbacks: int, allow: Callable[[Pick], bool] = _always,
                   time_left: Callable[[], float] = _forever) -> Dispatch:
    """Run the calls; ``answered`` keeps the router's ranking order, whatever the finishing order.
    ``allow(pick)`` says whether an expert may be called now (its breaker); ``time_left()`` is
    what remains of the request's deadline."""
    out = Dispatch()
    spare = list(route.fallbacks)
    running: dict[asyncio.Task, Pick] = {}

    def start(pick: Pick) -> bool:
        if not allow(pick):
            out.skipped.append(pick)
            return False
        out.called.append(pick)
        running[asyncio.ensure_future(call(pick))] = pick
        return True

    def start_next() -> None:
        while (pick := _next(spare, out, running)) is not None and not start(pick):
            pass

    skipped = [pick for pick in route.chosen if not start(pick)]
    for _ in skipped:
        start_next()
    replaced = 0
    try:
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pick = running.pop(task)
                error = task.exception()
                if error is None:
                    out.answered.append((pick, task.result()))
                    continue
                if isinstance(error, ClientError):
                    out.refused.append((pick, error))
                    continue
                if not isinstance(error, UpstreamFailure):
                    raise error
                out.failed.append((pick, error))
                if not out.refused and replaced < fallbacks and time_left() > 0:
                    replaced += 1
                    start_next()
    finally:
        for task in running:  # only when the request itself is cancelled (client gone)
            task.cancel()
    rank = {p.index: i for i, p in enumerate(out.called)}
    out.answered.sort(key=lambda pa: rank[pa[0].index])
    out.refused.sort(key=lambda pe: rank[pe[0].index])
    return out


def _next(spare: list[Pick], out: Dispatch, running: dict[asyncio.Task, Pick]) -> Pick | None:
    """The best-ranked unused expert whose LLM is not already answering or being asked (a copy
    of a failed LLM on another server may stand in for it)."""
    busy = {p.column for p, _ in out.answered} | {p.column for p in running.values()}
    while spare:
        pick = spare.pop(0)
        if pick.column not in busy:
            return pick
    return None
