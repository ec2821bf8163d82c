"""The exact solvers agree with each other and with brute force on random and shipped instances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.objective import CoverageObjective
from moe2_cli.problem import Budgets, Problem
from moe2_cli.solvers import SOLVERS, Limits, Status, get_solver
from moe2_cli.solvers.base import tie_key
from moe2_cli.solvers.exhaustive import ExhaustiveSolver
from moe2_cli.solvers.polyblock import PolyblockSolver
from tests.conftest import ROOT
from tests.solvers.cases import (
    ProbabilityCoverage,
    TopTwoAverage,
    budgets_between,
    budgets_for,
    random_instance,
)

EXACT = ("polyblock", "brb", "cpsat", "exhaustive")
GATED_PROOF = "proof: gated box bound on F itself (valid for non-monotone F)"  # a stable note
VARIANTS = {  # polyblock's options must not change the optimum
    "polyblock eager": lambda: PolyblockSolver(lazy=False),
    "polyblock single cut": lambda: PolyblockSolver(multi_cut=False),
    "polyblock no greedy": lambda: PolyblockSolver(greedy=False),
    "polyblock no reduce": lambda: PolyblockSolver(reduce=False),
    "polyblock eager single cut": lambda: PolyblockSolver(lazy=False, multi_cut=False),
}
# Budget positions between "one cheap expert fits" (0) and "everyone fits" (1); sampled
# rather than drawn as floats, which would sit mostly on the trivial ends.
FRACTIONS = st.sampled_from((0.05, 0.2, 0.35, 0.5, 0.65, 0.8))
SETTINGS = settings(max_examples=60, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def monotone_problems(draw) -> Problem:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(8, 14))
    # k = 1 makes every set of fitting experts feasible (worst cases are maxima): rarely drawn.
    top_k = draw(st.sampled_from((2, 3, 2, 1)))
    inst = random_instance(rng, n, servers=draw(st.integers(1, 4)), top_k=top_k)
    budgets = budgets_between(inst, draw(FRACTIONS), draw(FRACTIONS),
                              math_latency_frac=draw(st.none() | FRACTIONS))
    if draw(st.booleans()):
        objective = CoverageObjective(inst)
    else:
        objective = ProbabilityCoverage(inst, rng.beta(1.0, 2.0, (40, n)))
    return Problem(inst, budgets, objective)


def solve_all(problem: Problem, names) -> dict:
    out = {}
    for name in names:
        solver = VARIANTS[name]() if name in VARIANTS else get_solver(name)
        out[name] = solver.solve(problem)
    return out


def same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))


@SETTINGS
@given(monotone_problems())
def test_exact_solvers_agree_with_brute_force(problem):
    truth = ExhaustiveSolver(all_feasible=True).solve(problem)
    results = solve_all(problem, (*EXACT, *VARIANTS))
    for name, result in results.items():
        assert same(result.objective, truth.objective), (name, result, truth)
        expected = Status.INFEASIBLE if math.isnan(truth.objective) else Status.OPTIMAL
        assert result.status is expected, (name, result)
        assert result.monotonicity_violations == 0


@pytest.mark.parametrize("seed", range(8))
def test_exact_solvers_agree_on_harder_instances(seed):
    rng = np.random.default_rng(1000 + seed)
    inst = random_instance(rng, 14, servers=3 + seed % 3, top_k=2 + seed % 2)
    problem = Problem(inst, budgets_between(inst, 0.3 + 0.05 * seed, 0.5, math_latency_frac=0.4),
                      ProbabilityCoverage(inst, rng.beta(1.0, 2.0, (40, 14))))
    truth = get_solver("exhaustive").solve(problem)
    assert truth.iterations >= 6  # enough maximal sets to make the search non-trivial
    for name, result in solve_all(problem, ("polyblock", "brb", "cpsat", *VARIANTS)).items():
        assert same(result.objective, truth.objective), name
        assert result.status is Status.OPTIMAL


@SETTINGS
@given(monotone_problems())
def test_no_solver_claims_optimal_below_another(problem):
    results = solve_all(problem, SOLVERS)
    found = [r.objective for r in results.values() if r.mask]
    best = max(found) if found else math.nan
    for name, result in results.items():
        if result.status is Status.OPTIMAL:
            assert result.objective >= best - 1e-12, (name, result.objective, best)
        if result.mask:
            assert result.objective <= best


def top_two_problem(seed: int, n: int) -> Problem:
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, servers=3, top_k=2)
    probs = rng.beta(1.0, 1.5, (60, n))
    scores = probs + rng.normal(0, 0.3, probs.shape)  # a noisy gate
    return Problem(inst, budgets_for(inst, 0.7, 0.9), TopTwoAverage(inst, scores, probs))


@pytest.mark.parametrize("seed", range(6))
def test_non_monotone_objective(seed):
    problem = top_two_problem(seed, 10)
    truth = ExhaustiveSolver(all_feasible=True).solve(problem)
    assert truth.status is Status.OPTIMAL and truth.monotonicity_violations > 0
    results = solve_all(problem, SOLVERS)
    for name, result in results.items():
        if result.mask:
            assert result.objective <= truth.objective + 1e-12, name
        if result.status is Status.OPTIMAL:
            assert same(result.objective, truth.objective), name
    poly = results["polyblock"]
    assert poly.monotonicity_violations > 0 and poly.max_violation > 0
    assert poly.status is Status.FEASIBLE and math.isnan(poly.bound)  # no optimality claimed
    assert any("not monotone" in note for note in poly.notes)


@st.composite
def gated_problems(draw) -> Problem:
    """A random gated F (not monotone): ties in the logits, sometimes one LLM on two servers."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(4, 14))
    top_k = draw(st.sampled_from((1, 2, 3, 4, 14)))
    inst = random_instance(rng, n, servers=draw(st.integers(1, 4)), top_k=min(top_k, n))
    budgets = budgets_between(inst, draw(FRACTIONS), draw(FRACTIONS), math_latency_frac=draw(st.none() | FRACTIONS))
    columns = np.arange(n)
    if draw(st.booleans()):
        columns[rng.integers(1, n)] = columns[0]  # two experts host the same LLM
    m = int(columns.max()) + 1
    queries = 40
    probs = rng.beta(1.0, 1.5, (queries, m))
    logits = np.round(probs * 3 + rng.normal(0, 1, probs.shape), 1)  # a noisy gate; rounding makes ties
    weights = share_weights(rng.integers(0, len(inst.categories), queries), inst.shares)
    metric = draw(st.sampled_from(("accuracy", "neg-cross-entropy")))
    return Problem(inst, budgets, GatedObjective(inst, logits, probs, weights, expert_columns=columns, metric=metric))


@settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate])  # every solve counts: report a failure unshrunk
@given(gated_problems())
def test_every_optimal_claim_on_gated_f_matches_exhaustive_all(problem):
    truth = get_solver("exhaustive-all").solve(problem)
    for name in SOLVERS:
        if name == "exhaustive-all":
            continue
        # CP-SAT may enumerate maximal sets for long: a limit keeps the test fast, and a
        # stopped solve claims nothing.
        result = get_solver(name).solve(problem, Limits(time_s=2.0))
        if result.mask:
            assert result.objective <= truth.objective + 1e-12, name
        if result.status is Status.OPTIMAL:
            assert same(result.objective, truth.objective), (name, result, truth)
            assert any(note.startswith("proof:") for note in result.notes), (name, result.notes)
    brb = get_solver("brb").solve(problem)
    assert brb.status is (Status.INFEASIBLE if math.isnan(truth.objective) else Status.OPTIMAL)
    # ties too resolve as exhaustive search resolves them: toward the cheaper selection
    assert brb.mask == truth.mask or tie_key(problem, brb.mask) == tie_key(problem, truth.mask)


def test_cpsat_enumerates_every_maximal_set():
    rng = np.random.default_rng(4)
    inst = random_instance(rng, 12, servers=3, top_k=2)
    problem = Problem(inst, budgets_for(inst, 0.5, 0.8), CoverageObjective(inst))
    exhaustive = get_solver("exhaustive").solve(problem)
    cpsat = get_solver("cpsat").solve(problem)
    assert cpsat.iterations == exhaustive.iterations  # both count the maximal feasible sets


SCENARIOS = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_across_budgets(path):
    import moe2_cli.scenario as scenario_module
    scenario = scenario_module.load_scenario(path)
    inst = scenario.instance
    full = inst.usage(np.array([inst.full_mask], dtype=np.int64))
    for energy in np.linspace(0.15, 1.0, 6) * float(full.energy_j.max()):
        for latency in np.linspace(0.3, 1.0, 3) * float(full.latency_s.max()):
            budgets = Budgets.build(inst.categories, energy=float(energy), latency=float(latency))
            problem = Problem(inst, budgets, CoverageObjective(inst))
            results = solve_all(problem, EXACT)
            values = {name: r.objective for name, r in results.items()}
            assert all(same(v, values["exhaustive"]) for v in values.values()), values


def gated_problem(seed: int, n: int, top_k: int) -> Problem:
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, servers=max(2, n // 3), top_k=top_k)
    probs = rng.beta(1.0, 1.5, (200, n))
    logits = 3 * probs + rng.normal(0, 1, probs.shape)
    weights = share_weights(rng.integers(0, len(inst.categories), 200), inst.shares)
    return Problem(inst, budgets_between(inst, 0.5, 0.6), GatedObjective(inst, logits, probs, weights))


@pytest.mark.parametrize("name", ["brb", "polyblock"])
@pytest.mark.parametrize(("seed", "top_k"), [(11, 2), (12, 3), (13, 5)])
def test_gated_proofs_find_the_optimum_of_a_fleet_repeating_few_llms(seed, top_k, name):
    # 13 experts hosting 4 LLMs: brb branches on LLMs and drops copies of the ones it holds.
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, 13, servers=4, top_k=top_k)
    probs = rng.beta(1.0, 1.5, (150, 4))
    logits = np.round(3 * probs + rng.normal(0, 1, probs.shape), 1)
    weights = share_weights(rng.integers(0, len(inst.categories), 150), inst.shares)
    objective = GatedObjective(inst, logits, probs, weights, expert_columns=np.arange(13) % 4)
    problem = Problem(inst, budgets_between(inst, 0.4, 0.5), objective)
    truth = get_solver("exhaustive-all").solve(problem)
    result = get_solver(name).solve(Problem(inst, problem.budgets, GatedObjective(
        inst, logits, probs, weights, expert_columns=np.arange(13) % 4)))
    assert result.status is Status.OPTIMAL and result.objective == truth.objective
    assert result.notes[0] == GATED_PROOF
    if name == "brb":  # copies of one LLM tie: brb picks one as cheap as exhaustive search's
        assert tie_key(problem, result.mask) == tie_key(problem, truth.mask)


@pytest.mark.parametrize(("seed", "n", "top_k"), [(3, 10, 3), (5, 14, 4), (8, 12, 2)])
def test_polyblock_proves_the_gated_optimum_with_the_box_bound(seed, n, top_k):
    truth = get_solver("exhaustive-all").solve(gated_problem(seed, n, top_k))
    result = get_solver("polyblock").solve(gated_problem(seed, n, top_k))
    assert result.status is Status.OPTIMAL and result.objective == truth.objective
    assert result.notes == (GATED_PROOF,)


@pytest.mark.parametrize("name", ["cpsat", "exhaustive"])
def test_monotone_proofs_are_not_claimed_on_the_gated_f(name):
    result = get_solver(name).solve(gated_problem(3, 10, 3))
    assert result.status is Status.FEASIBLE and math.isnan(result.bound)
    assert any("monotone" in note for note in result.notes), result.notes
    assert not any(note.startswith("proof:") for note in result.notes)


@pytest.mark.parametrize("name", ["brb", "polyblock", "exhaustive-all", "cpsat"])
def test_time_limits_are_honoured_with_an_incumbent(name):
    # Unlimited, each of these solves takes several seconds; the tolerance absorbs a loaded machine.
    problem = gated_problem(7, 20, 6)
    result = get_solver(name).solve(problem, Limits(time_s=0.3))
    assert result.wall_s <= 0.3 + 2.0, result.wall_s
    if result.status is Status.LIMIT:
        # CP-SAT exact has no incumbent before its first set, exhaustive none before its table
        assert result.mask or name in ("cpsat", "exhaustive-all")
        if name == "brb":  # its bound holds for the gated F: the gap is proven
            assert result.gap >= 0 and math.isfinite(result.gap)
