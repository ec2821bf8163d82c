"""A circuit breaker per expert: an expert that keeps failing is skipped for a cooldown, so a
dead expert costs one timeout per cooldown instead of one per request.

An expert is *closed* (called) until it fails ``failures`` times in a row, or more than
``rate`` of its last ``window`` calls fail; it is then *open* (skipped) for ``cooldown_s``.
After the cooldown it is *half-open*: the next request calls it once, as a probe, while others
still skip it; the probe's success closes it, its failure opens it for another cooldown.

The clock is injected (``time.monotonic`` unless a test says otherwise) so that tests move time
instead of sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum


class State(IntEnum):
    """The values ``moe2_expert_state`` shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 3  # in a row
    cooldown_s: float = 30.0
    window: int = 20  # last calls whose failure rate is watched
    rate: float = 0.5  # failure rate above which the expert opens, once the window is full

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window < 1:
            raise ValueError("a breaker needs failures >= 1 and window >= 1")
        if not self.cooldown_s > 0 or not 0 < self.rate <= 1:
            raise ValueError("a breaker needs cooldown_s > 0 and 0 < rate <= 1")


@dataclass
class _Record:
    in_a_row: int = 0
    recent: deque[bool] = field(default_factory=deque)  # True: a failure
    opened_at: float | None = None
    probing: bool = False


class Breaker:
    """The breakers of a set of experts."""

    def __init__(self, experts: Iterable[str], settings: BreakerSettings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self._records = {expert: _Record() for expert in experts}

    def add(self, experts: Iterable[str]) -> None:
        """Breakers for experts not yet known (closed); known ones keep their record."""
        for expert in experts:
            self._records.setdefault(expert, _Record())

    def state(self, expert: str) -> State:
        record = self._records[expert]
        opened_at = record.opened_at  # read once: the probe listener's thread asks while the loop changes it
        if opened_at is None:
            return State.CLOSED
        if record.probing or self.clock() - opened_at >= self.settings.cooldown_s:
            return State.HALF_OPEN
        return State.OPEN

    def allow(self, expert: str) -> bool:
        """Whether to call ``expert`` now; a half-open expert is allowed once (the probe) until
        the probe ends with :meth:`succeeded`, :meth:`failed` or :meth:`abandoned`."""
        record, state = self._records[expert], self.state(expert)
        if state is State.CLOSED:
            return True
        if state is State.OPEN or record.probing:
            return False
        record.probing = True
        return True

    def succeeded(self, expert: str) -> None:
        record = self._records[expert]
        record.in_a_row, record.opened_at, record.probing = 0, None, False
        self._remember(record, False)

    def failed(self, expert: str) -> None:
        record = self._records[expert]
        record.in_a_row += 1
        self._remember(record, True)
        if record.probing or self._tripped(record):
            record.opened_at, record.probing = self.clock(), False
            record.recent.clear()  # after a cooldown the rate starts afresh

    def abandoned(self, expert: str) -> None:
        """A call that ended neither way (the client left): a probe slot is freed for the next."""
        self._records[expert].probing = False

    def in_a_row(self, expert: str) -> int:
        return self._records[expert].in_a_row

    def retry_after(self) -> float:
        """Seconds until the first open expert may be probed again (0 when one is not open)."""
        now, cooldown = self.clock(), self.settings.cooldown_s
        waits = [max(0.0, r.opened_at + cooldown - now) for r in self._records.values() if r.opened_at is not None]
        return min(waits) if len(waits) == len(self._records) else 0.0

    def all_open(self) -> bool:
        """Whether every expert is open (none is called, none may be probed): the selection
        cannot answer, and readiness should say so."""
        return all(self.state(e) is State.OPEN for e in self._records)

    def states(self) -> dict[str, State]:
        return {e: self.state(e) for e in self._records}

    def _remember(self, record: _Record, failure: bool) -> None:
        record.recent.append(failure)
        if len(record.recent) > self.settings.window:
            record.recent.popleft()

    def _tripped(self, record: _Record) -> bool:
        if record.opened_at is not None:  # already open: a late failure of an old call
            return False
        if record.in_a_row >= self.settings.failures:
            return True
        full = len(record.recent) == self.settings.window
        return full and sum(record.recent) / self.settings.window > self.settings.rate
