"""The best-first loop of the branch-reduce-bound searches (over experts in ``brb``, over sets
of LLMs in ``llm_sets``): open boxes [p, q] in a max-heap by their bound on F, the best one
visited next, until no open box can beat the incumbent or a limit stops the search."""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod

from moe2_cli.solvers.base import Incumbent, SolveContext


class BestFirstBoxes(ABC):
    """A subclass says whether a box may still beat the incumbent (``_may_beat``: better F, or
    a tie it would win) and what visiting one does (``_visit``: branch, reduce, offer)."""

    def __init__(self, ctx: SolveContext):
        self.ctx = ctx
        self.best = Incumbent()
        self.heap: list[tuple[float, int, int, int]] = []  # (-bound, |q|, q, p)
        self.iterations = 0
        self.peak = 0

    @property
    def val(self) -> float:
        return self.best.value

    @abstractmethod
    def _may_beat(self, bound: float, p: int) -> bool:
        """Whether a box [p, ...] bounded by ``bound`` can hold a selection before the incumbent."""

    @abstractmethod
    def _visit(self, p: int, q: int, bound: float) -> None:
        """Search the box [p, q], popped with ``bound``: offer what it holds, push the boxes it
        splits into."""

    def _push(self, bound: float, q: int, p: int) -> None:
        if self._may_beat(bound, p):
            heapq.heappush(self.heap, (-bound, int(q).bit_count(), q, p))  # ties: the smaller q first
            self.peak = max(self.peak, len(self.heap))

    def _search(self) -> bool:
        """Visit the open boxes best first until none can beat the incumbent; False if a limit
        stopped it (the open boxes stay in the heap)."""
        while self.heap:
            if self.ctx.limit_hit(len(self.heap)) is not None:
                return False
            neg, _, q, p = heapq.heappop(self.heap)
            if -neg < self.val:
                self.heap.clear()  # no open box can beat the incumbent
                break
            if not self._may_beat(-neg, p):
                continue
            self.iterations += 1
            self.ctx.report(self.iterations, self.val, -neg)
            self._visit(p, q, -neg)
        return True
