"""Voronoi losses, K̄, and density distances, against direct loops and closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moe2_cli.errors import InputError
from moe2_cli.stats.losses import (
    RBAR,
    align_translation,
    d1,
    d2,
    expected_distances,
    kbar,
    voronoi_cells,
)
from moe2_cli.stats.model import MoEParams, translate_gate
from moe2_cli.stats.presets import PRESETS, preset
from moe2_cli.stats.xdist import XDist


def perturbed(params: MoEParams, rng, scale: float) -> MoEParams:
    k, d = params.n_experts, params.dim
    return params.with_(beta0=params.beta0 + scale * rng.normal(size=k),
                        beta1=params.beta1 + scale * rng.normal(size=(k, d)),
                        a=params.a + scale * rng.normal(size=(k, d)), b=params.b + scale * rng.normal(size=k),
                        sigma=params.sigma * np.exp(scale * rng.normal(size=k)))


def permuted(params: MoEParams, order) -> MoEParams:
    return params.with_(beta0=params.beta0[order], beta1=params.beta1[order], a=params.a[order],
                        b=params.b[order], sigma=params.sigma[order])


def loop_loss(fitted: MoEParams, truth: MoEParams, use_rbar: bool) -> float:
    """D1 / D2 written as the formulas read, one atom at a time."""
    def atom(p, i):
        return np.concatenate([p.beta1[i], p.a[i], [p.b[i], p.sigma[i]]])

    omega = [atom(fitted, i) for i in range(fitted.n_experts)]
    omega_star = [atom(truth, j) for j in range(truth.n_experts)]
    cells = [[] for _ in omega_star]
    for i, w in enumerate(omega):
        cells[int(np.argmin([np.linalg.norm(w - ws) for ws in omega_star]))].append(i)
    total = 0.0
    for j, cell in enumerate(cells):
        r = RBAR[len(cell)] if use_rbar and len(cell) > 1 else 1
        half = r / 2 if r > 1 else 1
        for i in cell:
            total += np.exp(fitted.beta0[i]) * (np.linalg.norm(fitted.beta1[i] - truth.beta1[j]) ** r
                                                + np.linalg.norm(fitted.a[i] - truth.a[j]) ** half
                                                + abs(fitted.b[i] - truth.b[j]) ** r
                                                + abs(fitted.sigma[i] - truth.sigma[j]) ** half)
        total += abs(sum(np.exp(fitted.beta0[i]) for i in cell) - np.exp(truth.beta0[j]))
    return total


@pytest.mark.parametrize("name", list(PRESETS))
def test_d1_of_the_truth_with_itself_is_zero(name):
    truth = preset(name).params
    assert d1(truth, truth) == 0.0
    assert d2(truth, truth) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_d1_and_d2_are_permutation_invariant(seed):
    rng = np.random.default_rng(seed)
    truth = preset("ident-k3K2").params
    fitted = perturbed(truth.with_(top_k=2), rng, 0.2)
    order = rng.permutation(3)
    assert d1(permuted(fitted, order), truth) == pytest.approx(d1(fitted, truth), rel=1e-12)
    split = perturbed(preset("ident-k3K2").over_specified(), rng, 0.05)
    order = rng.permutation(4)
    assert d2(permuted(split, order), truth) == pytest.approx(d2(split, truth), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_d2_equals_d1_when_every_cell_has_one_atom(seed):
    truth = preset("ident-k3K2").params
    fitted = perturbed(truth, np.random.default_rng(seed), 0.1)
    assert [len(c) for c in voronoi_cells(fitted, truth)] == [1, 1, 1]
    assert d2(fitted, truth) == pytest.approx(d1(fitted, truth), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_losses_match_the_formulas_written_as_loops(seed):
    rng = np.random.default_rng(seed)
    truth = preset("ident-k3K2").params
    split = perturbed(preset("ident-k3K2").over_specified(), rng, 0.1)
    assert d1(split, truth) == pytest.approx(loop_loss(split, truth, use_rbar=False), rel=1e-12)
    assert d2(split, truth) == pytest.approx(loop_loss(split, truth, use_rbar=True), rel=1e-12)


def test_split_truth_has_zero_losses_and_cells_of_two_one_one():
    truth = preset("ident-k3K2")
    split = truth.over_specified()
    assert voronoi_cells(split, truth.params) == [[0, 1], [2], [3]]
    assert d1(split, truth.params) == pytest.approx(0.0, abs=1e-15)
    assert d2(split, truth.params) == pytest.approx(0.0, abs=1e-15)


def test_d2_refuses_cells_of_four_atoms():
    truth = preset("ident-k3K2").params
    rows = [0, 0, 0, 0, 1, 2]
    four = truth.with_(beta0=truth.beta0[rows] - np.log(4) * (np.arange(6) < 4), beta1=truth.beta1[rows],
                       a=truth.a[rows], b=truth.b[rows], sigma=truth.sigma[rows])
    with pytest.raises(InputError, match="4 fitted atoms"):
        d2(four, truth)
    assert d1(four, truth) == pytest.approx(0.0, abs=1e-12)


def test_kbar_on_cells_two_one_one_with_k_two_is_three():
    assert kbar([2, 1, 1], 2) == 3


@pytest.mark.parametrize("seed", range(5))
def test_kbar_matches_brute_force_over_subsets(seed):
    sizes = np.random.default_rng(seed).integers(0, 4, size=5).tolist()
    for top_k in range(1, 6):
        brute = max(sum(sizes[j] for j in subset) for subset in itertools.combinations(range(5), top_k))
        assert kbar(sizes, top_k) == brute


def test_align_translation_undoes_a_translation_of_the_fit():
    truth = preset("ident-k3K2").params
    fitted = perturbed(truth, np.random.default_rng(0), 0.05)
    moved = translate_gate(fitted, 0.7, np.array([0.03]))
    aligned = align_translation(moved, truth)
    np.testing.assert_allclose(aligned.beta1[-1], truth.beta1[-1], atol=1e-12)
    assert aligned.beta0[-1] == pytest.approx(truth.beta0[-1], abs=1e-12)
    shifted_truth = translate_gate(truth, 0.4, np.array([-0.2]))
    assert d1(shifted_truth, truth) > 0.1
    assert d1(align_translation(shifted_truth, truth), truth) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", list(PRESETS))
def test_hellinger_and_tv_of_a_density_with_itself_are_zero(name):
    truth = preset(name)
    dist = expected_distances(truth.params, truth.params, truth.x)
    assert dist.hellinger == 0.0 and dist.tv == 0.0
    same = expected_distances(truth.over_specified(), truth.params, truth.x) if name == "ident-k3K2" else dist
    assert same.hellinger == pytest.approx(0.0, abs=1e-7)


def single_gaussian(mean: float, variance: float) -> MoEParams:
    return MoEParams(beta0=[0.0], beta1=[[0.0]], a=[[0.0]], b=[mean], sigma=[variance], top_k=1)


@pytest.mark.parametrize("m1, v1, m2, v2", [(0, 1, 1e-3, 1), (0, 0.09, 0.5, 0.2), (1, 2, -1, 0.5), (0, 1, 40, 1)])
def test_hellinger_matches_the_closed_form_for_two_gaussians(m1, v1, m2, v2):
    dist = expected_distances(single_gaussian(m1, v1), single_gaussian(m2, v2), XDist())
    bc = np.sqrt(2 * np.sqrt(v1 * v2) / (v1 + v2)) * np.exp(-((m1 - m2) ** 2) / (4 * (v1 + v2)))
    assert dist.hellinger == pytest.approx(np.sqrt(1 - bc), rel=1e-6, abs=1e-12)
    assert 0 <= dist.hellinger <= 1 and 0 <= dist.tv <= 1
    assert dist.hellinger ** 2 <= dist.tv + 1e-12 <= np.sqrt(2) * dist.hellinger + 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_distances_are_symmetric_and_bounded(seed):
    truth = preset("ident-k3K2")
    other = perturbed(truth.params, np.random.default_rng(seed), 0.5)
    forward = expected_distances(other, truth.params, truth.x)
    backward = expected_distances(truth.params, other, truth.x)
    assert forward.hellinger == pytest.approx(backward.hellinger, rel=1e-9)
    assert forward.tv == pytest.approx(backward.tv, rel=1e-9)
    assert 0 < forward.hellinger <= 1 and 0 < forward.tv <= 1


def test_losses_reject_a_dimension_mismatch():
    truth = preset("ident-k3K2").params
    wide = truth.with_(beta1=np.hstack([truth.beta1, truth.beta1]), a=np.hstack([truth.a, truth.a]))
    with pytest.raises(InputError, match="dimension"):
        d1(wide, truth)
