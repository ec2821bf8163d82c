"""Requests routed together in one batch get the routes they would get alone."""

from __future__ import annotations

import asyncio

from moe2_cli.serve.batching import RouteBatcher
from moe2_cli.serve.plan import Plan
from moe2_cli.serve.queries import Query
from tests.serve.conftest import TOPICS


def test_one_batch_per_loop_turn_and_the_same_routes(base_plan, monkeypatch):
    calls, route = [], Plan.route

    def counted(plan, queries, source="queries"):
        calls.append(len(queries))
        return route(plan, queries, source)

    monkeypatch.setattr(Plan, "route", counted)
    queries = [Query(id=str(i), category=("mcq", "math")[i % 2], text=f"{topic} {i}")
               for i, topic in enumerate(list(TOPICS.values()) * 5)]

    async def main():
        batcher = RouteBatcher(base_plan)
        together = await asyncio.gather(*(batcher.route(q) for q in queries))
        alone = await batcher.route(queries[3])
        return together, alone

    together, alone = asyncio.run(main())
    assert calls == [len(queries), 1]
    assert together == [route(base_plan, [q])[0] for q in queries]
    assert alone == together[3]
