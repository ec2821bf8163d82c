"""The resource model: worst-case energy and latency, checked by hand and by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moe2_cli.problem import (
    ENERGY_UNITS_PER_J,
    LATENCY_UNITS_PER_S,
    Budgets,
    Instance,
    bool_to_masks,
    mask_of,
    masks_to_bool,
    members,
    popcount,
    scale_down,
    scale_up,
)


def make_instance(latency, energy, servers, transmission, top_k, aggregation=0.05):
    latency, energy = np.asarray(latency, float), np.asarray(energy, float)
    n, c = latency.shape
    return Instance(
        name="t", expert_ids=tuple(f"e{i}" for i in range(n)), expert_llms=tuple(f"m{i}" for i in range(n)),
        expert_server=np.asarray(servers), server_names=tuple(f"s{i}" for i in range(len(transmission))),
        transmission_s=np.asarray(transmission, float), categories=tuple(f"c{j}" for j in range(c)),
        shares=np.full(c, 1.0 / c), latency_s=latency, energy_j=energy, accuracy=np.full((n, c), 0.5),
        top_k=top_k, aggregation_s=aggregation,
    )


def test_hand_computed_colocated_and_k_smaller_than_selection():
    # Experts 0,1,2 share server 0; expert 3 is alone on server 1. k = 2.
    inst = make_instance(latency=[[1.0], [2.0], [3.0], [4.5]], energy=[[10.0], [20.0], [30.0], [5.0]],
                         servers=[0, 0, 0, 1], transmission=[0.1, 0.3], top_k=2)
    usage = inst.usage([mask_of([0, 1, 2]), mask_of([0, 3]), mask_of([0, 1, 2, 3]), 0])
    # energy: two largest of the selection
    assert usage.energy_j[:, 0].tolist() == [50.0, 15.0, 50.0, 0.0]
    # latency: server 0 runs its two slowest one after another (2 + 3) after 0.1 transmission;
    # server 1 runs 4.5 after 0.3; plus 0.05 aggregation.
    assert usage.latency_s[:, 0] == pytest.approx([5.15, 4.85, 5.15, 0.0])


def test_k_at_least_selection_sums_everything():
    inst = make_instance(latency=[[1.0, 2.0], [2.0, 1.0]], energy=[[3.0, 4.0], [5.0, 6.0]],
                         servers=[0, 0], transmission=[0.0], top_k=5, aggregation=0.0)
    usage = inst.usage([3])
    assert usage.energy_j[0].tolist() == [8.0, 10.0]
    assert usage.latency_s[0].tolist() == [3.0, 3.0]


def brute_force(inst: Instance, mask: int):
    chosen = members(mask)
    c = len(inst.categories)
    if not chosen:
        return np.zeros(c, np.int64), np.zeros(c, np.int64)
    energy = np.array([sum(sorted((inst.energy_units[i, j] for i in chosen), reverse=True)[:inst.top_k])
                       for j in range(c)])
    latency = np.zeros(c, np.int64)
    for j in range(c):
        worst = 0
        # every way the gate can route one query: any k-subset of the selection
        for routed in itertools.combinations(chosen, min(inst.top_k, len(chosen))):
            per_server = {}
            for i in routed:
                s = inst.expert_server[i]
                per_server[s] = per_server.get(s, inst.transmission_units[s]) + inst.latency_units[i, j]
            worst = max(worst, max(per_server.values()))
        latency[j] = worst + inst.aggregation_units
    return energy, latency


@pytest.mark.parametrize("seed", range(6))
def test_usage_matches_brute_force_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(2, 9)), int(rng.integers(1, 4))
    inst = make_instance(latency=rng.uniform(0.1, 5, (n, c)), energy=rng.uniform(1, 100, (n, c)),
                         servers=rng.integers(0, 3, n), transmission=rng.uniform(0, 0.5, 3),
                         top_k=int(rng.integers(1, 4)), aggregation=float(rng.uniform(0, 0.2)))
    masks = rng.integers(0, 1 << n, 40)
    usage = inst.usage(masks)
    for row, m in enumerate(masks):
        energy, latency = brute_force(inst, int(m))
        assert usage.energy[row].tolist() == energy.tolist()
        assert usage.latency[row].tolist() == latency.tolist()


def test_scaling_is_conservative():
    assert scale_up(0.1, ENERGY_UNITS_PER_J) == 100  # no off-by-one from float round-off
    assert scale_up(0.1000001, ENERGY_UNITS_PER_J) == 101
    assert scale_down(2.5, LATENCY_UNITS_PER_S) == 2_500_000
    assert scale_down(0.0999999, ENERGY_UNITS_PER_J) == 99


def test_budgets_per_category_override_global():
    b = Budgets.build(("a", "b"), energy=10.0, latency=2.0, latency_by_cat={"b": 4.0})
    assert b.latency_s == (2.0, 4.0)
    assert b.energy_units.tolist() == [10_000, 10_000]


def test_feasible_is_monotone_down_set():
    rng = np.random.default_rng(3)
    inst = make_instance(latency=rng.uniform(0.1, 2, (6, 2)), energy=rng.uniform(1, 50, (6, 2)),
                         servers=[0, 0, 1, 1, 2, 2], transmission=[0.1, 0.2, 0.3], top_k=2)
    budgets = Budgets.build(inst.categories, energy=60, latency=2.5)
    feasible = budgets.feasible(inst.usage(np.arange(64)))
    for m in range(64):
        for i in members(m):
            if feasible[m]:
                assert feasible[m & ~(1 << i)]


def test_mask_helpers_round_trip():
    masks = np.array([0, 1, 5, 2**40 + 3])
    assert bool_to_masks(masks_to_bool(masks, 48)).tolist() == masks.tolist()
    assert popcount(masks).tolist() == [0, 1, 2, 3]
    assert members(mask_of([0, 3, 7])) == [0, 3, 7]
