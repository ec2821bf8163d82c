"""Reloading the plan while serving. SIGHUP, or a change of the watched ``--selection`` file
(polled every second), rebuilds the plan the way start-up built it, off the event loop (fitting
a router may take seconds), checks it and swaps it in between two requests: requests routed
already finish on the old plan, later ones take the new one, and none is dropped.

A plan that fails to build or check leaves the old one serving: the failure is logged and
counted, and the server goes on. ``/metrics`` shows the plan served (its hash and S), when it
was loaded and how many reloads were applied or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

from moe2_cli.errors import Moe2Error
from moe2_cli.serve.companion import Companion
from moe2_cli.serve.metrics import Family
from moe2_cli.serve.plan import Plan
from moe2_cli.serve.planning import Built, plan_hash
from moe2_cli.serve.proxy import Proxy

POLL_S = 1.0
OUTCOMES = ("applied", "failed")


class Reloader(Companion):
    """Reloads ``proxy``'s plan with ``build`` (a :class:`~moe2_cli.serve.planning.PlanRecipe`'s,
    run in a thread) on SIGHUP, on :meth:`request`, and when ``watched`` changes."""

    def __init__(self, proxy: Proxy, build: Callable[[], Built], watched: Path | None = None, poll_s: float = POLL_S):
        self.proxy, self.build, self.watched, self.poll_s = proxy, build, watched, poll_s
        self.loaded_at = time.time()
        self.seen = _digest(watched) if watched is not None else None  # the file's content when last looked at
        self.triggers: list[str] = []  # what asked for the reload to come
        self.wanted = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.info = Family("moe2_plan_info", "The plan served: a digest of its scenario, S, k, router and seed, and "
                           "S.", "gauge", sample=self._info)
        self.loaded = Family("moe2_plan_loaded_timestamp_seconds", "When the plan served was loaded (Unix time).",
                             "gauge", sample=lambda: {(): self.loaded_at})
        self.reloads = Family("moe2_plan_reloads_total", "Plan reloads (SIGHUP or a change of the --selection "
                              "file): applied, or failed (the old plan kept serving).", "counter")
        for outcome in OUTCOMES:
            self.reloads.inc((("outcome", outcome),), 0)

    def families(self) -> list[Family]:
        return [self.info, self.loaded, self.reloads]

    def _info(self) -> dict[tuple[tuple[str, str], ...], float]:
        plan = self.proxy.plan
        return {(("hash", plan_hash(plan)), ("selection", ",".join(plan.selection))): 1.0}

    async def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._reloads()))
        if self.watched is not None:
            self.tasks.append(asyncio.create_task(self._watch()))
        # Only the main thread can take a signal; a server run in another (as tests do) reloads on request.
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request, "sighup")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def request(self, trigger: str) -> None:
        """Ask for a reload (on the event loop). Asks made while one runs make one more after it,
        which reads the files as they are by then."""
        self.triggers.append(trigger)
        self.wanted.set()

    async def _reloads(self) -> None:
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            triggers, self.triggers = self.triggers, []
            await self.reload("+".join(dict.fromkeys(triggers)))

    async def _watch(self) -> None:
        assert self.watched is not None
        while True:
            await asyncio.sleep(self.poll_s)
            digest = await asyncio.to_thread(_digest, self.watched)
            # A file missing or unreadable for a moment (being replaced) is waited for, not loaded.
            if digest is not None and digest != self.seen:
                self.seen = digest
                self.request("file")

    async def reload(self, trigger: str) -> bool:
        """Build, check and swap in a new plan; False (the old plan kept) when that fails."""
        started = time.perf_counter()
        old = self.proxy.plan
        try:
            built = await asyncio.to_thread(self._build)
            problem = _changed_scenario(old, built.plan)
        except Exception as err:  # noqa: BLE001 - whatever went wrong, the plan served goes on
            problem = _one_line(err)
        if problem is not None:
            self.reloads.inc((("outcome", "failed"),))
            self.proxy.log("plan_reload_failed", trigger=trigger, error=problem, serving=plan_hash(old))
            return False
        self.proxy.swap(built.plan, built.targets)
        self.loaded_at = time.time()
        self.reloads.inc((("outcome", "applied"),))
        self.proxy.log("plan_reloaded", trigger=trigger, hash=plan_hash(built.plan), selection=built.plan.selection,
                       router=built.plan.router_name, top_k=built.plan.k, previous=plan_hash(old),
                       seconds=round(time.perf_counter() - started, 3))
        return True


    def _build(self) -> Built:
        # What the build reads is what the watcher has seen: a change caught half-written, before
        # this read, asks for no second reload of the same file.
        if self.watched is not None:
            self.seen = _digest(self.watched) or self.seen
        return self.build()


def _changed_scenario(old: Plan, new: Plan) -> str | None:
    """Why ``new`` cannot replace ``old`` while serving: the model served, the categories requests
    name and the experts routed to are fixed at start."""
    a, b = old.scenario, new.scenario
    if (a.name, a.instance.categories, a.instance.expert_ids) == (b.name, b.instance.categories, b.instance.expert_ids):
        return None
    return (f"the scenario's name, categories or experts changed since the server started ({b.path}): restart "
            f"moe2 serve to serve them")


def _one_line(err: Exception) -> str:
    text = " / ".join(err.lines()) if isinstance(err, Moe2Error) else f"{type(err).__name__}: {err}"
    return text.replace("\n", " / ")


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
