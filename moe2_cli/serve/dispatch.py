"""Call a query's top-k experts concurrently; when one fails, the next expert of S in the gate's
ranking takes its place, at most ``fallbacks`` times per request.

An expert that refuses the request itself (a :class:`ClientError`) is not a failure: no other
expert would take it, so no replacement is called after one. The calls already running finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from moe2_cli.serve.routing import Pick, Route
from moe2_cli.serve.upstream import Answer, ClientError, UpstreamFailure

Caller = Callable[[Pick], Awaitable[Answer]]


@dataclass
class Dispatch:
    """What happened to one request: the experts called, in order, and how each ended."""

    called: list[Pick] = field(default_factory=list)
    answered: list[tuple[Pick, Answer]] = field(default_factory=list)
    failed: list[tuple[Pick, UpstreamFailure]] = field(default_factory=list)
    refused: list[tuple[Pick, ClientError]] = field(default_factory=list)


async def dispatch(route: Route, call: Caller, fallbacks: int) -> Dispatch:
    """Run the calls; ``answered`` keeps the router's ranking order, whatever the finishing order."""
    out = Dispatch()
    spare = list(route.fallbacks)
    running: dict[asyncio.Task, Pick] = {}

    def start(pick: Pick) -> None:
        out.called.append(pick)
        running[asyncio.ensure_future(call(pick))] = pick

    for pick in route.chosen:
        start(pick)
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
                may_replace = not out.refused and len(out.called) - len(route.chosen) < fallbacks
                replacement = _next(spare, out, running) if may_replace else None
                if replacement is not None:
                    start(replacement)
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
