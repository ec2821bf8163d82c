"""Selection rules: the parsimonious choice against brute force; best single and runner-up."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.confidence import Bootstrap
from moe2_cli.gating.ensemble import GatedObjective, MonotoneEnvelope, share_weights
from moe2_cli.problem import Problem, popcount
from moe2_cli.rules import assess, best_single, parsimonious_choice, runner_up
from tests.solvers.cases import budgets_between, random_instance


def _problem(seed: int, n: int = 8):
    rng = np.random.default_rng(seed)
    instance = random_instance(rng, n)
    q = 600
    category = rng.integers(0, len(instance.categories), q)
    scores = (rng.random((q, n)) < rng.uniform(0.2, 0.8, n)).astype(float)
    gated = GatedObjective(instance, rng.standard_normal((q, n)) + 2 * scores, scores,
                           share_weights(category, instance.shares))
    budgets = budgets_between(instance, 0.5, 0.6)
    return Problem(instance=instance, budgets=budgets, objective=MonotoneEnvelope(gated)), gated, category


def _brute(problem, gated, threshold):
    rows = []
    for mask in range(1, 1 << problem.instance.n_experts):
        if problem.feasible([mask])[0] and gated.value(mask) >= threshold:
            energy = int(problem.usage([mask]).energy.max())
            rows.append((energy, int(popcount(np.array([mask]))[0]), -gated.value(mask), mask))
    return min(rows)[3]


@pytest.mark.parametrize("seed", range(4))
def test_parsimonious_choice_matches_brute_force(seed):
    problem, gated, _ = _problem(seed)
    masks = np.arange(1, 1 << 8)
    feasible = masks[problem.feasible(masks)]
    best = int(feasible[np.argmax(problem.objective(feasible))])
    for se in (0.0, 0.01, 0.05):
        chosen = parsimonious_choice(problem, best, se)
        assert chosen == _brute(problem, gated, problem.objective.value(best) - se)
        assert problem.feasible([chosen])[0]
    wide = parsimonious_choice(problem, best, 1.0)
    assert problem.usage([wide]).energy.max() <= problem.usage([best]).energy.max()


def test_assessment_names_the_best_single_and_a_different_runner_up():
    problem, gated, category = _problem(7)
    masks = np.arange(1, 1 << 8)
    feasible = masks[problem.feasible(masks)]
    best = int(feasible[np.argmax(problem.objective(feasible))])
    single = best_single(problem)
    singles = [1 << i for i in range(8) if problem.feasible([1 << i])[0]]
    assert gated.value(single) == max(gated.value(m) for m in singles)
    other = runner_up(problem, best, gated)
    assert other & best != best
    assert gated.value(other) == max(gated.value(int(m)) for m in feasible if int(m) & best != best)
    report = assess(problem, best, Bootstrap(gated, category, resamples=300))
    assert report.gain.estimate == pytest.approx(gated.value(best) - gated.value(single), abs=1e-9)
    assert report.gap.estimate == pytest.approx(gated.value(best) - gated.value(other), abs=1e-9)
    assert report.significant == (not report.gain.low <= 0 <= report.gain.high)


def test_above_the_enumeration_limit_the_frontier_gives_the_same_energy(monkeypatch):
    from moe2_cli.solvers import get_solver

    problem, gated, _ = _problem(2)
    masks = np.arange(1, 1 << 8)
    feasible = masks[problem.feasible(masks)]
    best = int(feasible[np.argmax(problem.objective(feasible))])
    enumerated = parsimonious_choice(problem, best, 0.02)
    monkeypatch.setattr("moe2_cli.rules.ENUMERATION_LIMIT", 4)
    from_frontier = parsimonious_choice(problem, best, 0.02, get_solver("polyblock"))
    energy = problem.usage([enumerated, from_frontier]).energy.max(axis=1)
    assert energy[0] == energy[1] and gated.value(from_frontier) >= problem.objective.value(best) - 0.02


def test_a_spent_time_limit_leaves_the_frontier_unproven_and_the_rule_reports_the_best(monkeypatch):
    from moe2_cli.gating.confidence import Bootstrap
    from moe2_cli.rules import apply_rule
    from moe2_cli.solvers import Limits, get_solver

    problem, gated, category = _problem(2)
    monkeypatch.setattr("moe2_cli.rules.ENUMERATION_LIMIT", 4)
    engine = get_solver("brb")
    best = engine.solve(problem)
    assert parsimonious_choice(problem, best.mask, 0.02, engine, Limits(time_s=0.0)) is None
    bootstrap = Bootstrap(gated, category, resamples=50)
    kept = apply_rule(problem, best, "parsimonious", bootstrap, engine, Limits(time_s=0.0))
    assert kept.mask == best.mask and "the time limit came before" in kept.notes[-1]
    chosen = apply_rule(problem, best, "parsimonious", bootstrap, engine, Limits(time_s=600.0))
    assert "rule parsimonious: the least worst-case energy" in chosen.notes[-1]


def test_a_floor_stops_the_exact_frontier_at_the_first_corner_below_it():
    from moe2_cli.pareto import exact_energy_frontier
    from moe2_cli.solvers import get_solver

    problem, _, _ = _problem(3)
    engine = get_solver("brb")
    whole = exact_energy_frontier(problem, engine)
    floor = whole[-1].result.objective - 1e-9  # every corner of the front but the best lies below
    cut = exact_energy_frontier(problem, engine, floor=floor)
    assert len(whole) > 2 and [p.result.mask for p in cut] == [p.result.mask for p in whole[-2:]]
