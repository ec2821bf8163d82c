"""Session stickiness: the later turns of a conversation go to the expert that answered it,
so one voice keeps the thread, while that expert is in S and healthy.

A session is named by the client (the ``X-Moe2-Session`` header or the body's ``user``). The
memory is bounded: at most ``capacity`` sessions, least recently used first out, and a session
unused for ``ttl_s`` is forgotten. Names are kept as digests, so a long name costs no more
memory than a short one.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from moe2_cli.serve.routing import Route

SESSIONS = 10_000
SESSION_TTL_S = 3600.0  # an hour without a turn ends a conversation


@dataclass(frozen=True)
class Stuck:
    """A turn sent to its session's expert; ``overrode`` when the router ranked another first."""

    expert: str
    overrode: bool


class Sessions:
    """Session name -> the expert answering it, least recently used first."""

    def __init__(self, capacity: int = SESSIONS, ttl_s: float = SESSION_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        if capacity < 1 or not ttl_s > 0:
            raise ValueError(f"capacity must be >= 1 and ttl_s > 0 (got {capacity}, {ttl_s})")
        self.capacity, self.ttl_s, self.clock = capacity, ttl_s, clock
        self._experts: OrderedDict[bytes, tuple[str, float]] = OrderedDict()  # digest -> (expert, last used)

    def __len__(self) -> int:
        return len(self._experts)

    def expert(self, session: str) -> str | None:
        """The expert answering ``session``, None when it is unknown or has expired."""
        key = _digest(session)
        held = self._experts.get(key)
        if held is None:
            return None
        if self.clock() - held[1] > self.ttl_s:
            del self._experts[key]
            return None
        return held[0]

    def remember(self, session: str, expert: str) -> None:
        """``expert`` answered ``session`` now."""
        key, now = _digest(session), self.clock()
        self._experts[key] = (expert, now)
        self._experts.move_to_end(key)
        # Oldest first is also soonest to expire: every use moves a session to the end.
        while self._experts and (len(self._experts) > self.capacity
                                 or now - next(iter(self._experts.values()))[1] > self.ttl_s):
            self._experts.popitem(last=False)


def _digest(session: str) -> bytes:
    return hashlib.blake2b(session.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def steer(route: Route, expert: str) -> tuple[Route, Stuck] | None:
    """``route`` sending its query to ``expert`` alone (the rest of S, in the router's order,
    as its fallbacks); None when ``expert`` is not in S."""
    picks = [*route.chosen, *route.fallbacks]
    kept = next((p for p in picks if p.expert == expert), None)
    if kept is None:
        return None
    rest = tuple(replace(p, weight=0.0) for p in picks if p is not kept)
    stuck = Stuck(expert=expert, overrode=not route.chosen or route.chosen[0].expert != expert)
    return Route(query=route.query, chosen=(replace(kept, weight=1.0),), fallbacks=rest), stuck
