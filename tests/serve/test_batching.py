"""Requests routed together in one batch get the routes they would get alone."""

from __future__ import annotations

import asyncio

import moe2_cli.serve.batching as batching
from moe2_cli.serve.batching import RouteBatcher
from moe2_cli.serve.queries import Query
from moe2_cli.serve.routing import route_queries
from tests.serve.conftest import TOPICS


def test_one_batch_per_loop_turn_and_the_same_routes(base_plan, monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(len(args[3]))
        return route_queries(*args, **kwargs)

    monkeypatch.setattr(batching, "route_queries", counted)
    queries = [Query(id=str(i), category=("mcq", "math")[i % 2], text=f"{topic} {i}")
               for i, topic in enumerate(list(TOPICS.values()) * 5)]

    async def main():
        batcher = RouteBatcher(base_plan)
        together = await asyncio.gather(*(batcher.route(q) for q in queries))
        alone = await batcher.route(queries[3])
        return together, alone

    together, alone = asyncio.run(main())
    assert calls == [len(queries), 1]
    assert together == [route_queries(base_plan.gate, base_plan.mask, base_plan.k, [q])[0] for q in queries]
    assert alone == together[3]
