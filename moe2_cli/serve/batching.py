"""Route live requests in batches: the requests that arrive within one turn of the event loop
are routed by one call of the routing core.

Featurising and scoring one query costs about as much as a batch of dozens (the fixed cost of
building sparse matrices dominates), and it runs on the event loop, so under load one call per
request would queue every request behind the others. Each row of the core's result depends on
its own query only, so batching changes no route.
"""

from __future__ import annotations

import asyncio

from moe2_cli.serve.plan import Plan
from moe2_cli.serve.queries import Query
from moe2_cli.serve.routing import Route


class RouteBatcher:
    def __init__(self, plan: Plan):
        self.plan = plan
        self._pending: list[tuple[Query, asyncio.Future[Route]]] = []

    async def route(self, query: Query) -> Route:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Route] = loop.create_future()
        self._pending.append((query, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)  # after the callbacks already due: they may add requests
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            routes = self.plan.route([q for q, _ in batch], source="request")
        except Exception as err:  # every waiting request learns why, none hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), route in zip(batch, routes):
            if not future.done():  # a request whose client went away was cancelled
                future.set_result(route)
