"""Readiness, kept apart from liveness: ``/readyz`` is true once the server has started (the router
and its imports were warmed before the socket listened), while it is not draining, and while
every check in :attr:`Readiness.checks` passes.

Each expert's server is probed in the background, on a client of its own, and ``/readyz`` reads
the last result: a readiness probe never waits for an upstream, nor queues behind chat work in
the experts' connection pools.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from moe2_cli.serve.admission import Admission
from moe2_cli.serve.proxy import Proxy
from moe2_cli.serve.upstream import probe

PROBE_EVERY_S = 5.0
Check = Callable[[], "str | None"]  # None when ready, else why not


class Readiness:
    def __init__(self, proxy: Proxy, admission: Admission, probe_every_s: float = PROBE_EVERY_S):
        self.proxy, self.admission, self.probe_every_s = proxy, admission, probe_every_s
        self.started = False
        self.probed: dict[str, str | None] = {}  # an expert server's base URL -> why its last probe failed
        # Further conditions are appended here.
        self.checks: list[Check] = [self._warm, self._not_draining, self._reachable, self._not_all_resting]
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task | None = None

    def reasons(self) -> list[str]:
        return [reason for check in self.checks if (reason := check()) is not None]

    def ready(self) -> bool:
        return not self.reasons()

    def report(self) -> dict:
        """What ``/readyz`` shows: the status, why it is not ready, and each expert's record."""
        reasons = self.reasons()
        upstreams = {}
        for expert, target in self.proxy.serving.items():
            state, error = self.proxy.states[expert], self.probed.get(target.api_base, "not probed yet")
            upstreams[expert] = {"state": "up" if error is None else "down", "error": error,
                                 "breaker": self.proxy.breaker.state(expert).name.lower().replace("_", "-"),
                                 "calls": state.calls, "failures": state.failures,
                                 "consecutive_failures": self.proxy.breaker.in_a_row(expert),
                                 "last_error": state.last_error}
        return {"status": "not_ready" if reasons else "ready", "reasons": reasons, "model": self.proxy.model_name,
                "selection": self.proxy.plan.selection, "top_k": self.proxy.plan.k, "upstreams": upstreams}

    async def start(self) -> None:
        """Probe every expert's server once, then keep probing in the background."""
        self._client = httpx.AsyncClient(trust_env=False)
        await self._probe()
        self._task = asyncio.create_task(self._keep_probing())
        self.started = True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _probe(self) -> None:
        assert self._client is not None
        by_base = {t.api_base: t for t in self.proxy.serving.values()}
        results = await asyncio.gather(*(probe(self._client, t) for t in by_base.values()))
        self.probed = dict(zip(by_base, results))

    async def _keep_probing(self) -> None:
        while True:
            await asyncio.sleep(self.probe_every_s)
            await self._probe()

    def _warm(self) -> str | None:
        return None if self.started else "starting"

    def _not_draining(self) -> str | None:
        return "draining" if self.admission.draining else None

    def _reachable(self) -> str | None:
        if any(error is None for error in self.probed.values()):
            return None
        return "no expert's server answered its last probe"

    def _not_all_resting(self) -> str | None:
        return "every expert's circuit breaker is open" if self.proxy.breaker.all_open() else None
