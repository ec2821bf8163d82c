"""The mean-budget test a branch-and-bound prunes boxes with.

Mean budgets do not make the feasible selections a down-set: adding an expert can lower a
category's mean cost (a cheaper expert takes queries over) or raise it. A box [low, high] may
still be discarded when even the lower bound of :func:`~moe2_cli.mean_cost.box_lower`
exceeds a mean budget: then no selection of the box meets it. A selection itself counts as
feasible only on its exact mean (``FeasibilityModel.fits``).
"""

from __future__ import annotations

import numpy as np

from moe2_cli.mean_cost import box_lower
from moe2_cli.problem import Problem


class MeanBound:
    """Whether a box of selections can hold one that meets the problem's mean budgets."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.active = problem.has_mean
        self.caps = problem.mean_caps() if self.active else None
        self.pruned = 0  # boxes ruled out by the bound

    def may_fit(self, low: int, high: int) -> bool:
        """False only when no S with low ⊆ S ⊆ high meets every mean budget."""
        if not self.active:
            return True
        assert self.caps is not None and self.problem.routing is not None
        use = box_lower(self.problem.routing, self.problem.instance, low, high)
        fits = bool((use.energy[0] <= self.caps[0]).all() and (use.latency[0] <= self.caps[1]).all())
        self.pruned += not fits
        return fits

    def note(self) -> tuple[str, ...]:
        """The proof note of a solve under mean budgets."""
        if not self.active:
            return ()
        return (f"mean budgets: a box is pruned when its lower bound on the mean cost exceeds a budget "
                f"({self.pruned} boxes); a selection counts only on its exact mean",)


def exact_only(problem: Problem, masks: tuple[int, ...]) -> tuple[int, ...]:
    """The masks that meet every budget, mean ones included (all of them without mean budgets)."""
    if not problem.has_mean or not masks:
        return masks
    ok = problem.feasible(np.array(masks, dtype=np.int64))
    return tuple(m for m, good in zip(masks, ok.tolist()) if good)
