"""Which feasible selection to report, and how much better it is than the alternatives.

``best`` is the exact maximiser of the estimated F. ``parsimonious`` is the one-standard-error
rule of model selection: among feasible selections whose F is within one bootstrap standard
error of the best, the one with the least worst-case energy, then the fewest experts. An exact
maximiser of a noisy estimate partly maximises the noise; a selection the data cannot tell
apart from it, but that costs less, holds up at least as well on new queries.

Both are exact: up to :data:`ENUMERATION_LIMIT` experts every selection is scored; above it the
parsimonious choice is read off the exact F-energy frontier (every corner, by ε-constraint).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from moe2_cli.errors import UsageError
from moe2_cli.gating.confidence import Bootstrap, Interval
from moe2_cli.objective import Objective
from moe2_cli.problem import Problem, bits_of, mask_of, members, popcount
from moe2_cli.solvers import Limits, SolveResult, Status
from moe2_cli.solvers.base import SolveContext
from moe2_cli.solvers.brb import BrbSolver

RULES = ("best", "parsimonious")
DEFAULT_RULE = "best"  # lower true regret than parsimonious in benchmarks/selection_regret.py (README)
ENUMERATION_LIMIT = 20  # 2^20 selections are scored in a few seconds


def feasible_selections(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every non-empty feasible mask, its F and its worst-case energy (integer units)."""
    n = problem.instance.n_experts
    if n > ENUMERATION_LIMIT:
        raise ValueError(f"enumeration needs at most {ENUMERATION_LIMIT} experts (got {n})")
    masks = np.arange(1, 1 << n, dtype=np.int64)
    masks = masks[problem.feasible(masks)]
    return masks, problem.objective(masks), problem.usage(masks).energy.max(axis=1)


def parsimonious_choice(problem: Problem, best_mask: int, se: float, solver=None,
                        limits: Limits = Limits()) -> int | None:
    """The least worst-case-energy feasible selection (then fewest experts, then higher F, then
    lowest mask) whose F is at least F(best) - se; None when ``limits`` stop the exact frontier
    it is read from (above :data:`ENUMERATION_LIMIT` experts) before it is proven."""
    threshold = problem.objective.value(best_mask) - se
    if problem.instance.n_experts <= ENUMERATION_LIMIT:
        masks, values, energy = feasible_selections(problem)
        good = values >= threshold
        masks, values, energy = masks[good], values[good], energy[good]
        order = np.lexsort((masks, -values, popcount(masks), energy))
        return int(masks[order[0]])
    from moe2_cli.pareto import exact_energy_frontier  # the frontier imports the solvers

    began = time.perf_counter()
    # Ascending energy; the trace stops at the first corner below the threshold.
    points = exact_energy_frontier(problem, solver, limits, floor=threshold, whole_trace=True)
    cut = limits.left(began).time_s == 0.0 or any(p.result.status is Status.LIMIT for p in points)
    return None if cut else next(p.result.mask for p in points if p.result.objective >= threshold)


def best_single(problem: Problem) -> int | None:
    """The expert with the highest F among those that fit alone (lowest index on ties)."""
    singles = bits_of(range(problem.instance.n_experts), problem.instance.n_experts)
    fits = singles[problem.feasible(singles)]
    if fits.size == 0:
        return None
    return int(fits[int(np.argmax(problem.objective(fits)))])


def runner_up(problem: Problem, mask: int, objective: Objective, limits: Limits = Limits()) -> int | None:
    """The best feasible selection, by ``objective`` (the gate's own F, not an envelope), that
    does not offer the gate every LLM of ``mask``: a different plan, not the same one with an
    LLM added (the cheaper on ties, see ``Incumbent``). None when there is none.

    Such a selection misses every expert of some class (LLM, see ``Objective.expert_classes``)
    of ``mask``: one exact solve by brb, which resolves ties in that order, of the problem
    whose selections must miss one of those classes, within ``limits`` (None if they stop it)."""
    if limits.time_s is not None and limits.time_s <= 0:
        return None  # the time limit is spent: no search, not even brb's warm-up
    classes = np.asarray(objective.expert_classes())
    held = np.unique(classes[members(mask)]).tolist()
    others = replace(problem, objective=objective, avoid=()).avoiding_one_of(
        mask_of(np.flatnonzero(classes == c)) for c in held)
    result = BrbSolver().solve(others, limits)
    if result.status is not Status.OPTIMAL or not result.mask:
        return None  # none exists (or, for an F brb cannot prove on, none that is proven best)
    return result.mask


@dataclass(frozen=True)
class Assessment:
    """The selection's F with its interval, its gain over the best single expert that fits,
    and the gap to the runner-up, each a paired bootstrap interval."""

    objective: Interval
    best_single: int | None
    gain: Interval | None
    runner_up: int | None
    gap: Interval | None
    confidence: float

    @property
    def significant(self) -> bool | None:
        return None if self.gain is None else not self.gain.covers_zero


def assess(problem: Problem, mask: int, bootstrap: Bootstrap, limits: Limits = Limits()) -> Assessment:
    """Intervals for a chosen selection (F of ``problem`` may be a monotone envelope: values
    are taken from the gate's own F, which the envelope's choice attains); ``limits`` bound
    the search for the runner-up."""
    inner = bootstrap.objective
    single = best_single(problem)
    other = runner_up(problem, mask, inner, limits)
    return Assessment(objective=bootstrap.of(mask), best_single=single,
                      gain=None if single is None else bootstrap.difference(mask, single),
                      runner_up=other, gap=None if other is None else bootstrap.difference(mask, other),
                      confidence=bootstrap.confidence)


def apply_rule(problem: Problem, result: SolveResult, rule: str, bootstrap: Bootstrap, solver=None,
               limits: Limits = Limits()) -> SolveResult:
    """The solver's exact maximiser (``best``), or the parsimonious choice from it, as a result
    of the same solve (same status, the rule named in its notes); the maximiser, with a note,
    when ``limits`` stop the search for the parsimonious choice."""
    if rule not in RULES:
        raise UsageError(f"must be one of {', '.join(RULES)} (got {rule!r})", "rule")
    if rule == "best" or result.status is Status.INFEASIBLE or not result.mask:
        return result
    se = bootstrap.of(result.mask).se
    mask = parsimonious_choice(problem, result.mask, se, solver, limits)
    if mask is None:
        return replace(result, notes=(*result.notes, "rule parsimonious: the time limit came before its exact "
                                                     "frontier was proven, so the best selection is reported"))
    note = (f"rule parsimonious: the least worst-case energy selection with F within one standard error "
            f"({100 * se:.2f} pts) of the best, {100 * problem.objective.value(result.mask):.2f}%")
    chosen = SolveContext(problem, Limits()).result(result.solver, result.status, mask, bound=result.bound,
                                                    iterations=result.iterations, notes=(*result.notes, note))
    return replace(chosen, evaluations=result.evaluations, wall_s=result.wall_s)


def confidence_record(problem: Problem, assessment: Assessment) -> dict:
    """The JSON keys of the intervals (additive to the select and frontier records)."""
    experts = problem.instance.expert_ids
    objective = problem.objective
    level = assessment.confidence
    gain, gap = assessment.gain, assessment.gap
    single, other = assessment.best_single, assessment.runner_up
    return {
        "confidence": level,
        "objective_ci": _interval_record(assessment.objective),
        "gain_over_best_single": None if gain is None or single is None else {
            "expert": experts[members(single)[0]], **_interval_record(gain),
            "significant": not gain.covers_zero},
        "runner_up": None if gap is None or other is None else {
            "selection": [experts[i] for i in members(other)],
            "objective": float(objective.value(other)), "gap": _interval_record(gap)},
    }


def _interval_record(interval: Interval) -> dict[str, float]:
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high, "se": interval.se}


def significance_note(record: dict) -> str | None:
    """The note for a selection its data cannot tell apart from the best single expert."""
    gain = record["gain_over_best_single"]
    if gain is None or gain["significant"]:
        return None
    return (f"the selection is not significantly better than the best single expert that fits "
            f"({gain['expert']}): the interval of the gain at level {record['confidence']:g}, "
            f"{gain['low']:+.4f} to {gain['high']:+.4f}, covers 0")
