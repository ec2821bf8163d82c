"""More experts than a machine word has bits: masks as Python ints, solvers on 128 and 256 experts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moe2_cli.errors import UsageError
from moe2_cli.gating.ensemble import GatedObjective
from moe2_cli.gating.pipeline import scenario_outcomes
from moe2_cli.objective import CoverageObjective
from moe2_cli.problem import (
    MAX_EXPERTS,
    WORD_EXPERTS,
    Budgets,
    Instance,
    Problem,
    as_masks,
    bits_of,
    bool_to_masks,
    mask_bytes,
    mask_of,
    masks_to_bool,
    members,
    popcount,
)
from moe2_cli.scenario import load_scenario
from moe2_cli.serve.plan import read_selection
from moe2_cli.solvers import Limits, Status, get_solver
from tests.fleet import write_fleet
from tests.solvers.cases import random_instance

WIDE, CHEAP = 256, 12  # only the last CHEAP experts fit the energy budget alone


@pytest.mark.parametrize("n", [WORD_EXPERTS, WORD_EXPERTS + 1, 128, MAX_EXPERTS])
def test_masks_round_trip(n):
    rng = np.random.default_rng(n)
    rows = rng.random((50, n)) < 0.3
    rows[0, :], rows[1, :] = True, False
    masks = bool_to_masks(rows)
    assert masks.dtype == (np.int64 if n <= WORD_EXPERTS else object)
    assert np.array_equal(masks_to_bool(masks, n), rows)
    assert [members(m) for m in masks] == [np.flatnonzero(r).tolist() for r in rows]
    assert [mask_of(np.flatnonzero(r)) for r in rows] == [int(m) for m in masks]
    assert popcount(masks).tolist() == rows.sum(axis=1).tolist()
    width = (n + 7) // 8
    assert [bytes(b) for b in mask_bytes(masks, n)] == [int(m).to_bytes(width, "little") for m in masks]
    assert int(masks[0]) == (1 << n) - 1
    assert [int(m) for m in bits_of(range(n), n)] == [1 << i for i in range(n)]


def test_object_masks_hold_python_ints():
    masks = as_masks([np.int64(5), 1 << 200], WIDE)
    assert [type(m) for m in masks] == [int, int]
    assert (masks | (1 << 255)).tolist() == [5 | 1 << 255, 1 << 200 | 1 << 255]


def _wide_problem(seed: int) -> tuple[Problem, np.ndarray]:
    """256 experts on 86 servers; only the last CHEAP fit the energy budget alone, so every
    answer is a mask far above 2^63."""
    inst = random_instance(np.random.default_rng(seed), WIDE, servers=86)
    energy = inst.energy_j.copy()
    energy[:-CHEAP] += 1000.0
    inst = Instance(name="wide", expert_ids=inst.expert_ids, expert_llms=inst.expert_llms,
                    expert_server=inst.expert_server, server_names=inst.server_names,
                    transmission_s=inst.transmission_s, categories=inst.categories, shares=inst.shares,
                    latency_s=inst.latency_s, energy_j=energy, accuracy=inst.accuracy, top_k=2,
                    aggregation_s=inst.aggregation_s)
    budgets = Budgets.build(inst.categories, energy=14.0, latency=1.6)
    return Problem(inst, budgets, CoverageObjective(inst)), np.arange(WIDE - CHEAP, WIDE)


def _narrow(problem: Problem, idx: np.ndarray) -> Problem:
    """The same experts ``idx`` as an instance of their own (int64 masks)."""
    inst = problem.instance
    sub = Instance(name="narrow", expert_ids=tuple(inst.expert_ids[i] for i in idx),
                   expert_llms=tuple(inst.expert_llms[i] for i in idx), expert_server=inst.expert_server[idx],
                   server_names=inst.server_names, transmission_s=inst.transmission_s,
                   categories=inst.categories, shares=inst.shares, latency_s=inst.latency_s[idx],
                   energy_j=inst.energy_j[idx], accuracy=inst.accuracy[idx], top_k=inst.top_k,
                   aggregation_s=inst.aggregation_s)
    return Problem(sub, problem.budgets, CoverageObjective(sub))


def _brute_force(problem: Problem, idx: np.ndarray) -> float:
    subsets = [mask_of(idx[np.flatnonzero(t >> np.arange(idx.size) & 1)]) for t in range(1, 1 << idx.size)]
    fits = problem.feasible(subsets)
    return float(problem.objective(np.array(subsets, dtype=object)[fits]).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_wide_masks_agree_with_the_same_experts_in_int64(seed):
    wide, idx = _wide_problem(seed)
    narrow = _narrow(wide, idx)
    rows = np.random.default_rng(seed).random((200, CHEAP)) < 0.4
    small = bool_to_masks(rows)
    big = as_masks([mask_of(idx[r]) for r in rows], WIDE)
    assert big.dtype == object and small.dtype == np.int64
    w, s = wide.usage(big), narrow.usage(small)
    assert np.array_equal(w.energy, s.energy) and np.array_equal(w.latency, s.latency)
    assert np.array_equal(wide.feasible(big), narrow.feasible(small))
    assert np.allclose(wide.objective(big), narrow.objective(small))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["brb", "cpsat"])
def test_exact_solvers_find_the_optimum_among_256_experts(seed, name):
    problem, idx = _wide_problem(seed)
    result = get_solver(name).solve(problem, Limits(time_s=60))
    assert result.status is Status.OPTIMAL
    assert result.mask >> int(idx[0]) << int(idx[0]) == result.mask  # only the cheap experts
    assert result.objective == pytest.approx(_brute_force(problem, idx), abs=1e-12)
    assert problem.feasible([result.mask])[0]
    assert result.selection == tuple(problem.instance.expert_ids[i] for i in members(result.mask))


@pytest.mark.parametrize("name", ["greedy", "best-single", "random", "cpsat-surrogate"])
def test_heuristics_answer_on_256_experts(name):
    problem, idx = _wide_problem(0)
    result = get_solver(name).solve(problem, Limits(time_s=60))
    assert result.mask and set(members(result.mask)) <= set(idx.tolist())
    assert problem.feasible([result.mask])[0]
    assert result.objective == problem.objective.value(result.mask)


def test_solvers_that_need_one_word_refuse_wide_instances():
    problem, _ = _wide_problem(0)
    for name, said in [("exhaustive", "at most 26 experts (got 256)"), ("exhaustive-all", "at most 26 experts"),
                       ("polyblock", "at most 62 experts (got 256); use the brb solver")]:
        with pytest.raises(UsageError, match=said.replace("(", r"\(").replace(")", r"\)")):
            get_solver(name).solve(problem)


def test_the_gate_refuses_more_distinct_llms_than_a_column_mask_holds():
    inst = random_instance(np.random.default_rng(0), WORD_EXPERTS + 1, servers=5)
    with pytest.raises(UsageError, match=f"at most {WORD_EXPERTS} distinct LLMs.*has {WORD_EXPERTS + 1}"):
        scenario_outcomes(None, instance=inst)
    q, m = 10, WORD_EXPERTS + 1
    with pytest.raises(ValueError, match="at most 62 distinct LLMs"):
        GatedObjective(inst, np.zeros((q, m)), np.zeros((q, m)), np.ones(q) / q)


@pytest.mark.parametrize("n", [128, 256])
@pytest.mark.parametrize("solver", ["brb", "cpsat"])
def test_select_on_a_wide_fleet(run_cli, tmp_path, n, solver):
    path = write_fleet(tmp_path, n)
    result = run_cli("select", path, "--solver", solver, "--time-limit", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    scenario = load_scenario(path)
    assert scenario.instance.n_experts == n
    assert payload["status"] in ("optimal", "limit") and payload["selection"]
    assert "gap" in payload and payload["objective"] is not None
    if solver == "brb":  # proven on F itself; cpsat's bound needs a monotone F
        assert payload["gap"] >= 0
    for cat, used in payload["energy_j"].items():
        assert used <= payload["budgets"]["energy_j"][cat] + 1e-9
    saved = tmp_path / "selection.json"
    saved.write_text(result.stdout)
    assert read_selection(saved, scenario).mask == payload["mask"]
    assert [scenario.instance.expert_ids[i] for i in members(payload["mask"])] == payload["selection"]


@pytest.mark.parametrize("solver", ["exhaustive", "exhaustive-all", "polyblock"])
def test_select_refuses_cleanly_where_a_solver_cannot_go(run_cli, tmp_path, solver):
    result = run_cli("select", write_fleet(tmp_path, 128), "--solver", solver)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "experts (got 128)" in lines[0]


def test_the_envelope_refuses_a_wide_fleet(run_cli, tmp_path):
    result = run_cli("select", write_fleet(tmp_path, 128), "--envelope")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "experts (got 128)" in result.stderr
