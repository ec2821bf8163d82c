"""Energy of a wall-clock window on one server, whatever reads its power.

A meter is told when requests start and end (:meth:`PowerMeter.mark`) and answers the energy
between two marks. Readers that sample power over time (tegrastats, a power-meter log) keep a
:class:`Trace` and integrate it; NVML and RAPL read their energy counters at each mark; ``none`` is
watts x time and says that it is derived. When requests overlap on one server, each one's share
of a stretch of time is that stretch's energy divided by the requests in flight
(:func:`attributed`), so the shares add up to what the meter read.

Every reading is checked here, whatever the source: a sampled reading must be a finite,
non-negative power under :data:`MAX_WATTS` (others are dropped and counted), and a window's
energy must be finite, non-negative and within :data:`MAX_WATTS` times its length. A window
that no valid reading covers is a :class:`PowerError`, which fails that request only.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from moe2_cli.errors import Moe2Error
from moe2_cli.scenario.endpoint import PowerSource

COVERAGE_WAIT_S = 5.0  # how long to wait for a sampled reading that covers the end of a window
POLL_S = 0.01  # how often a sampled source is read while windows wait for a reading
# No single supply an edge LLM runs on draws more: a reading above it is a parse or meter fault.
MAX_WATTS = 5000.0
COUNTER_SLACK_J = 1.0  # an energy counter's rounding, allowed over MAX_WATTS x time


class PowerError(Moe2Error):
    """A power source cannot be read, or stopped giving readings."""


class PowerMeter(ABC):
    """Reads one server's energy. ``method`` says how (rails, GPU name), for profiles and messages."""

    method: str = ""

    # No-op hooks, not abstract: most meters need no setup or teardown.
    def start(self) -> None:  # noqa: B027
        """Begin reading (start a sampler); called once before the first mark."""

    def close(self) -> None:  # noqa: B027
        """Stop reading and release what :meth:`start` took."""

    def mark(self) -> float:
        """Now, on the wall clock, remembered as a window boundary."""
        return time.time()

    def prune(self, before: float) -> None:  # noqa: B027
        """Forget what no window starting at or after ``before`` needs (a long-running reader's
        memory stays bounded)."""

    @abstractmethod
    async def energy_j(self, t0: float, t1: float) -> float:
        """Joules used between two marks."""


class ConstantPower(PowerMeter):
    """``power: none``: a stated draw; energy is derived as watts x time."""

    def __init__(self, watts: float):
        self.watts = watts
        self.method = f"none: {watts:g} W x time (derived, not measured)"

    async def energy_j(self, t0: float, t1: float) -> float:
        return self.watts * (t1 - t0)


def valid_watts(w: float) -> bool:
    """Whether one power reading is physically possible."""
    return math.isfinite(w) and 0.0 <= w <= MAX_WATTS


@dataclass
class Trace:
    """Power samples in time order; each reading stands for the interval that ends at it.
    Readings out of range (:func:`valid_watts`) are dropped, but counted, and their time still
    counts as seen: a window they alone cover has no valid reading, rather than none yet."""

    times: list[float] = field(default_factory=list)
    watts: list[float] = field(default_factory=list)
    dropped: int = 0
    last_dropped: float | None = None  # the last out-of-range value, for the message
    seen: float = -math.inf  # the time of the last reading, dropped or not

    def add(self, t: float, w: float) -> None:
        if not math.isfinite(t) or t <= self.seen:
            return  # a clock step backwards or a repeated line: keep the trace ordered
        self.seen = t
        if not valid_watts(w):
            self.dropped += 1
            self.last_dropped = w
            return
        self.times.append(t)
        self.watts.append(w)

    def prune(self, before: float) -> None:
        """Drop the samples before ``before``: a window starting then or later is integrated from
        the first sample at or after its start, which stands for the time up to it."""
        i = bisect.bisect_left(self.times, before)
        del self.times[:i], self.watts[:i]

    def dropped_note(self) -> str:
        if not self.dropped:
            return ""
        return (f"; {self.dropped} reading{'s' * (self.dropped != 1)} out of range dropped (the last: "
                f"{self.last_dropped:g} W; a reading must be finite, non-negative and at most {MAX_WATTS:g} W)")

    def covers(self, t: float) -> bool:
        return self.seen >= t

    def valid_through(self, t: float) -> bool:
        return bool(self.times) and self.times[-1] >= t

    def energy_j(self, t0: float, t1: float) -> float:
        """Integral of the step function over [t0, t1]; the first sample also stands for the
        time before it, and nothing is extrapolated past the last one."""
        if not self.times or t1 <= t0:
            return 0.0
        total, left = 0.0, t0
        i = bisect.bisect_left(self.times, t0)
        while left < t1 and i < len(self.times):
            right = min(self.times[i], t1)
            total += self.watts[i] * max(0.0, right - left)
            left = max(left, right)
            i += 1
        return total


class SampledPower(PowerMeter):
    """A meter fed by timed power samples; :meth:`poll` pulls new ones in."""

    def __init__(self) -> None:
        self.trace = Trace()
        self._tick: asyncio.Future | None = None  # the next poll, shared by every window waiting

    def poll(self) -> None:
        """Move newly arrived samples into the trace (no-op for push-style readers)."""

    async def _next_poll(self) -> None:
        """Wait for the next poll, 10 ms away. One timer serves every waiter: a busy server has
        hundreds of windows waiting for the reading that covers their end."""
        if self._tick is None or self._tick.done():
            loop = asyncio.get_running_loop()
            self._tick = loop.create_future()
            loop.call_later(POLL_S, self._polled, self._tick)
        await asyncio.shield(self._tick)

    def _polled(self, tick: asyncio.Future) -> None:
        try:
            self.poll()
        except PowerError as err:  # every waiter learns the source failed
            tick.set_exception(err)
            return
        tick.set_result(None)

    def prune(self, before: float) -> None:
        self.poll()  # samples waiting to be pulled in are memory too
        self.trace.prune(before)

    async def energy_j(self, t0: float, t1: float) -> float:
        if self.trace.valid_through(t1):  # the common case while a window is shared stretch by stretch
            return self.trace.energy_j(t0, t1)
        deadline = time.monotonic() + COVERAGE_WAIT_S
        self.poll()
        while True:
            if self.trace.valid_through(t1):
                return self.trace.energy_j(t0, t1)
            if self.trace.covers(t1):
                raise PowerError(f"{self.method}: no valid power reading after the end of a request"
                                 f"{self.trace.dropped_note()}")
            if time.monotonic() > deadline:
                raise PowerError(f"{self.method}: no power reading after the end of a request "
                                 f"(waited {COVERAGE_WAIT_S:g} s); is it still running?"
                                 f"{self.trace.dropped_note()}")
            await self._next_poll()


def open_meter(source: PowerSource) -> PowerMeter:
    """The meter for a scenario's ``power`` setting; heavy readers are imported only here."""
    if source.kind == "none":
        assert source.watts is not None
        return ConstantPower(source.watts)
    if source.kind == "nvml":
        from moe2_cli.measure.nvml import NvmlEnergy

        return NvmlEnergy(source.gpu_index)
    if source.kind == "tegrastats":
        from moe2_cli.measure.tegrastats import Tegrastats

        return Tegrastats(source.interval_ms)
    if source.kind == "rapl":
        from moe2_cli.measure.rapl import RaplEnergy

        return RaplEnergy()
    from moe2_cli.measure.powerlog import PowerLog

    assert source.path is not None
    return PowerLog(source.path)


async def idle_watts(meter: PowerMeter, seconds: float) -> float:
    """Mean power over ``seconds`` with nothing sent to the server."""
    t0 = meter.mark()
    await asyncio.sleep(seconds)
    t1 = meter.mark()
    return checked_energy(meter, await meter.energy_j(t0, t1), t1 - t0) / (t1 - t0)


def checked_energy(meter: PowerMeter, joules: float, seconds: float) -> float:
    """``joules`` over ``seconds``, or a :class:`PowerError` when no meter could have read them."""
    if math.isfinite(joules) and 0.0 <= joules <= MAX_WATTS * seconds + COUNTER_SLACK_J:
        return joules
    raise PowerError(f"{meter.method}: an energy reading out of range was dropped ({joules:g} J in {seconds:g} s; "
                     f"a reading must be finite, non-negative and at most {MAX_WATTS:g} W)")


Window = tuple[float, float | None]  # start, end (None while in flight)


class ServerClock:
    """Stamps the request windows of one server on its meter and shares out their energy."""

    def __init__(self, meter: PowerMeter):
        self.meter = meter
        self._windows: dict[int, Window] = {}

    def open(self) -> tuple[int, float]:
        t = self.meter.mark()
        token = len(self._windows)
        self._windows[token] = (t, None)
        return token, t

    def close(self, token: int) -> float:
        t = self.meter.mark()
        self._windows[token] = (self._windows[token][0], t)
        return t

    async def share(self, token: int) -> tuple[float, float]:
        """(joules, seconds) of a closed window that belong to its request alone."""
        start, end = self._windows[token]
        assert end is not None, "close the window first"
        others = [w for k, w in self._windows.items() if k != token]
        joules, seconds = await attributed(self.meter.energy_j, (start, end), others)
        return checked_energy(self.meter, joules, end - start), seconds


async def attributed(energy: Callable[[float, float], Awaitable[float]], mine: tuple[float, float],
                     others: list[Window]) -> tuple[float, float]:
    """(joules, seconds) of one request's window that are its own: every stretch between
    boundaries is shared equally among the requests then in flight on the server."""
    start, end = mine
    cuts = sorted({start, end, *(t for s, e in others for t in (s, e) if t is not None and start < t < end)})
    joules = seconds = 0.0
    for (left, right), sharing in zip(zip(cuts, cuts[1:]), _sharing(cuts, others)):
        joules += await energy(left, right) / sharing
        seconds += (right - left) / sharing
    return joules, seconds


def _sharing(cuts: list[float], others: list[Window]) -> list[int]:
    """How many requests are in flight over each stretch between ``cuts`` (this one included).
    Another window covers a run of whole stretches, from the one its start opens (the first, if
    it began earlier) to the one its end closes: counted once each, by a sweep, since a busy
    server has hundreds of windows and a window hundreds of stretches."""
    n = len(cuts) - 1
    delta = [0] * (n + 1)
    for s, e in others:
        first = 0 if s <= cuts[0] else bisect.bisect_left(cuts, s)
        last = n if e is None or e >= cuts[-1] else bisect.bisect_left(cuts, e)
        if first < last:
            delta[first] += 1
            delta[last] -= 1
    running, out = 1, []
    for step in delta[:n]:
        running += step
        out.append(running)
    return out
