"""Joules measured per request: each scenario server with a power source (``endpoint.power``:
nvml, tegrastats, rapl, file:) gets one meter, read with ``moe2 measure``'s readers for as long
as the server runs.

Every expert call on such a server is a window on its meter, from the call's start to its end
on the wall clock. A window's joules are its share of the server's energy, as ``measure``
attributes it (:func:`~moe2_cli.measure.power.attributed`): each stretch of time is divided
equally among the calls then in flight on that server, so the shares add up to what the meter
read. A request's measured joules are the sum over the experts it called.

A sampled reader (tegrastats, a power-meter log) has the energy of a window only once a reading
after its end arrives, so the client's answer never waits for it: the request's log line is
written, and ``moe2_energy_joules_total{source="measured"}`` counted, by a task of its own once
the joules are known. That wait is bounded (:data:`SETTLE_S`, and at most :data:`MAX_SETTLING`
requests waiting): past it the line says null and the call is counted as unmeasured. Windows and
readings no later window needs are pruned every :data:`PRUNE_EVERY_S`, so memory stays bounded
however long the server runs.

``power: none`` (stated watts x time) is derived, not measured: serve counts only the profile's
estimate for those servers, as for servers without a power source.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from moe2_cli.measure.power import COVERAGE_WAIT_S, PowerError, PowerMeter, attributed, open_meter
from moe2_cli.scenario.scenario import Scenario
from moe2_cli.serve.metrics import Metrics

SETTLE_S = 2 * COVERAGE_WAIT_S  # the longest a request's log line waits for its joules
MAX_SETTLING = 10_000  # requests waiting for their joules; past this, their lines go out with null
PRUNE_EVERY_S = 1.0


@dataclass(eq=False)
class Window:
    """One expert call on a metered server, on the meter's clock."""

    start: float
    end: float | None = None  # None while the call runs
    readable: bool = True  # False when the meter could not be read at a boundary
    settled: bool = False  # its share was taken (or given up on)


class ServerMeter:
    """One server's meter and the windows of the calls on it."""

    def __init__(self, meter: PowerMeter):
        self.meter = meter
        self.windows: list[Window] = []

    def open(self) -> Window:
        start, readable = self._mark()
        window = Window(start, readable=readable)
        self.windows.append(window)
        return window

    def close(self, window: Window) -> None:
        if window.end is None:
            window.end, readable = self._mark()
            window.readable = window.readable and readable

    def _mark(self) -> tuple[float, bool]:
        # A reader failing here costs this window its joules, never the request its answer.
        try:
            return self.meter.mark(), True
        except PowerError:
            return time.time(), False

    async def share(self, window: Window) -> float:
        """The joules of a closed window that are its call's own."""
        assert window.end is not None, "close the window first"
        start, end = window.start, window.end
        others = [(w.start, w.end) for w in self.windows
                  if w is not window and w.start < end and (w.end is None or w.end > start)]
        try:
            if not window.readable:
                raise PowerError(f"{self.meter.method}: the meter could not be read when the call began or ended")
            joules, _ = await attributed(self.meter.energy_j, (start, end), others)
            return joules
        finally:
            window.settled = True

    def prune(self, now: float, keep_s: float) -> None:
        """Forget the windows no share needs any more, and the readings before the oldest
        window still to be shared. A window never shared within ``keep_s`` (its request was cut
        off before it was counted) is dropped."""
        waiting = [w for w in self.windows if not w.settled and w.start >= now - keep_s]
        horizon = min((w.start for w in waiting), default=now)
        # A shared window still matters as another's overlap while it ends after the horizon.
        overlapping = [w for w in self.windows if w.settled and w.end is not None and w.end > horizon]
        self.windows = waiting + overlapping
        self.meter.prune(horizon)


Calls = dict[str, tuple[ServerMeter, Window]]  # a request's expert -> its call's window
Write = Callable[[dict], None]  # the request log's
_CALLS: ContextVar[Calls | None] = ContextVar("moe2_calls", default=None)


class Power:
    """The meters of the servers that have a power source, by server; ``experts`` maps each
    expert on one of them to its server. Empty, it measures nothing and costs nothing."""

    def __init__(self, meters: dict[str, ServerMeter] | None = None, experts: dict[str, str] | None = None):
        self.meters = meters or {}
        self.experts = experts or {}
        self.metrics = Metrics()  # the proxy's, once attached
        self.keep_s = 3600.0
        self._settling: set[asyncio.Task] = set()
        self._keeper: asyncio.Task | None = None
        self._closed = False

    def attach(self, metrics: Metrics, longest_s: float) -> None:
        """Count into ``metrics``; a request takes at most ``longest_s`` seconds."""
        self.metrics, self.keep_s = metrics, longest_s + 2 * SETTLE_S

    # ------------------------------------------------------------------ one request

    def begin(self) -> None:
        """A request begins; its calls' tasks inherit the context, so they add to its windows."""
        if self.meters:
            _CALLS.set({})

    def called(self, expert: str) -> None:
        calls, server = _CALLS.get(), self.experts.get(expert)
        if calls is not None and server is not None and expert not in calls:
            meter = self.meters[server]
            calls[expert] = (meter, meter.open())

    def ended(self, expert: str) -> None:
        calls = _CALLS.get()
        if calls is not None and expert in calls:
            meter, window = calls[expert]
            meter.close(window)

    def settle(self, experts: list[str], record: dict | None, write: Write | None) -> None:
        """The request is over: fill in ``record``'s measured joules (null where not measured)
        and ``write`` it (without a request log, both are None), at once when none of
        ``experts`` was metered, else once known."""
        calls = _CALLS.get() or {}
        mine = {e: calls[e] for e in experts if e in calls}
        for meter, window in mine.values():
            meter.close(window)  # a stream the client left ends here
        if mine and len(self._settling) < MAX_SETTLING and not self._closed:
            task = asyncio.get_running_loop().create_task(self._settle(experts, mine, record, write))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
            return
        for expert, (_, window) in mine.items():
            window.settled = True
            self._unmeasured(expert)
        _fill(record, experts, {}, write)

    async def _settle(self, experts: list[str], mine: Calls, record: dict | None, write: Write | None) -> None:
        shares = await asyncio.gather(*(self._share(e, meter, window) for e, (meter, window) in mine.items()))
        _fill(record, experts, dict(zip(mine, shares)), write)

    async def _share(self, expert: str, meter: ServerMeter, window: Window) -> float | None:
        try:
            joules = await asyncio.wait_for(meter.share(window), SETTLE_S)
        except (PowerError, asyncio.TimeoutError):
            self._unmeasured(expert)
            return None
        self.metrics.expert_energy.inc((("expert", expert), ("source", "measured")), joules)
        return joules

    def _unmeasured(self, expert: str) -> None:
        self.metrics.unmeasured.inc((("expert", expert),))

    # ------------------------------------------------------------------ the server's life

    def run(self) -> None:
        """Prune in the background while the server runs (call on its event loop)."""
        if self.meters and self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            for meter in self.meters.values():
                with contextlib.suppress(PowerError):  # a reader gone bad shows in the shares
                    meter.prune(time.time(), self.keep_s)

    async def aclose(self) -> None:
        """Let the requests waiting for their joules finish (each is bounded), then close."""
        self._closed = True
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)
        self.close()

    def close(self) -> None:
        """Stop every reader (a tegrastats child process with them); safe to call twice."""
        self._closed = True
        atexit.unregister(self.close)
        for server in self.meters.values():
            server.meter.close()
        self.meters = {}


def _fill(record: dict | None, experts: Iterable[str], joules: dict[str, float | None], write: Write | None) -> None:
    if record is None or write is None:
        return
    by_expert: dict[str, float | None] = {}
    for expert in experts:
        share = joules.get(expert)
        by_expert[expert] = None if share is None else round(share, 6)
    measured = [j for j in by_expert.values() if j is not None]
    record["measured_j_by_expert"] = by_expert
    # The request's joules are known when every expert it called was measured.
    record["measured_j"] = round(sum(measured), 6) if measured and len(measured) == len(by_expert) else None
    write(record)


def open_power(scenario: Scenario, experts: list[str]) -> tuple[Power, list[str]]:
    """Start a meter for every server of ``experts`` whose endpoint has a measured power source;
    each that cannot start is left out, with one line saying why."""
    inst = scenario.instance
    server_of = {e: inst.server_names[inst.expert_server[inst.expert_ids.index(e)]] for e in experts}
    meters: dict[str, ServerMeter] = {}
    problems = []
    for server in dict.fromkeys(server_of.values()):
        endpoint = scenario.endpoints.get(server)
        if endpoint is None or endpoint.power is None or endpoint.power.derived:
            continue
        meter = open_meter(endpoint.power)
        try:
            meter.start()
        except PowerError as err:
            problems.append(f"server {server!r}: {err}")
            continue
        meters[server] = ServerMeter(meter)
    power = Power(meters, {e: s for e, s in server_of.items() if s in meters})
    if meters:  # a reader's child process must not outlive serve, however it ends
        atexit.register(power.close)
    return power, problems
