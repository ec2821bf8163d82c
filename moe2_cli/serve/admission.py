"""Admission control: at most ``max_inflight`` completion requests are worked on at once, at most
``max_queue`` more wait (each for ``queue_timeout_s`` at most) for a slot, and the rest are
refused at once, so the work accepted stays bounded however many clients arrive.

On SIGTERM the server drains: the waiting requests are refused, new ones too, and the requests
being worked on get ``grace_s`` seconds to finish; any still running then are cut (the HTTP
layer answers them with a 503). Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from moe2_cli.serve import DEFAULT_QUEUE_TIMEOUT_S
from moe2_cli.serve.metrics import Family

INFLIGHT_PER_EXPERT_SLOT = 4
MIN_INFLIGHT = 16
RETRY_AFTER_S = 1  # what a refused client is told to wait: a slot frees within a request's time


def default_max_inflight(n_experts: int, k: int) -> int:
    """4 x |S| x k, at least 16: every expert of S can hold a few requests of each of the k
    ranks a request fills, and a small selection still overlaps the proxy's own work."""
    return max(MIN_INFLIGHT, INFLIGHT_PER_EXPERT_SLOT * n_experts * k)


@dataclass(frozen=True)
class Bounds:
    max_inflight: int
    max_queue: int
    queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.max_inflight < 1 or self.max_queue < 0 or not 0 < self.queue_timeout_s < float("inf"):
            raise ValueError(f"bounds out of range: {self}")


class Rejected(Exception):
    """No slot for this request; ``reason`` is "busy" (queue full), "queue_timeout" or "draining"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Cut(Exception):
    """Raised into a request still running when the drain's grace has run out."""


@dataclass(eq=False)
class Ticket:
    """One admitted request: its task, cancelled if the drain cuts it."""

    task: asyncio.Task | None
    cut: bool = False


class Admission:
    def __init__(self, bounds: Bounds):
        self.bounds = bounds
        self.running: set[Ticket] = set()
        self.draining = False
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._queued = 0
        self.admitted = Family("moe2_admitted_total", "Completion requests given a slot.", "counter")
        self.rejected = Family("moe2_rejected_total", "Completion requests refused with a 503, by reason "
                               "(busy: queue full; queue_timeout; draining).", "counter")
        self.cut = Family("moe2_cut_total", "Requests still running when the drain's grace ran out, "
                          "answered with a 503.", "counter")
        self.admitted.inc((), 0)
        self.cut.inc((), 0)

    @property
    def queued(self) -> int:
        return self._queued

    async def enter(self) -> Ticket:
        """A slot for the current task, now or after a short wait; :class:`Rejected` if none."""
        if self.draining:
            raise self._reject("draining")
        if len(self.running) >= self.bounds.max_inflight or self._queued:
            await self._wait()
        ticket = Ticket(asyncio.current_task())
        self.running.add(ticket)
        self.admitted.inc(())
        return ticket

    def refuse_at_once(self) -> str | None:
        """Why a request arriving now would be refused without waiting (counted as refused), or
        None: lets the HTTP layer refuse before parsing the request, when that is cheaper."""
        full = len(self.running) >= self.bounds.max_inflight and self._queued >= self.bounds.max_queue
        reason = "draining" if self.draining else "busy" if full else None
        if reason is not None:
            self.rejected.inc((("reason", reason),))
        return reason

    def leave(self, ticket: Ticket) -> None:
        self.running.discard(ticket)
        while self._waiting and len(self.running) < self.bounds.max_inflight:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a waiter that timed out or went away has left the queue
                waiter.set_result(None)
                return

    def drain(self, grace_s: float) -> None:
        """Refuse the queue and every new request; cut what still runs after ``grace_s``."""
        if self.draining:
            return
        self.draining = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(Rejected("draining"))
        asyncio.get_running_loop().call_later(grace_s, self._cut_all)

    def render(self) -> list[str]:
        queued = Family("moe2_queued_requests", "Completion requests waiting for a slot.", "gauge")
        queued.inc((), self._queued)
        working = Family("moe2_admitted_in_flight", "Completion requests holding a slot.", "gauge")
        working.inc((), len(self.running))
        return [line for f in (self.admitted, self.rejected, self.cut, queued, working) for line in f.render()]

    async def _wait(self) -> None:
        if self._queued >= self.bounds.max_queue:
            raise self._reject("busy")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        self._queued += 1
        expiry = loop.call_later(self.bounds.queue_timeout_s, _expire, waiter)
        try:
            await waiter
        except Rejected as err:
            raise self._reject(err.reason) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.leave(Ticket(None))  # handed a slot as the request went away: pass it on
            raise
        finally:
            expiry.cancel()
            self._queued -= 1
            if len(self._waiting) > 2 * self.bounds.max_queue:  # expired waiters are dropped lazily
                self._waiting = deque(w for w in self._waiting if not w.done())

    def _reject(self, reason: str) -> Rejected:
        self.rejected.inc((("reason", reason),))
        return Rejected(reason)

    def _cut_all(self) -> None:
        for ticket in self.running:
            if ticket.task is not None and not ticket.task.done():
                ticket.cut = True
                ticket.task.cancel(msg="the drain's grace ran out")
                self.cut.inc(())

    @property
    def cut_count(self) -> int:
        return int(self.cut.values[()])


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(Rejected("queue_timeout"))
