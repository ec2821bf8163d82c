"""EM: monotone log-likelihood, exact M-steps, Newton direction, and recovery of the truth."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.stats.em import (
    expert_step,
    fit_em,
    gate_newton_direction,
    gate_step,
    initial_params,
    responsibilities,
)
from moe2_cli.stats.model import MoEParams
from moe2_cli.stats.presets import preset


def data(name: str, n: int, seed: int):
    truth = preset(name)
    rng = np.random.default_rng(seed)
    X, Y = truth.sample(rng, n)
    return truth, rng, X, Y


def design(X):
    return np.hstack([np.ones((len(X), 1)), X])


CASES = [("ident-k3K2", "exact", "near-truth"), ("ident-k3K2", "over", "near-truth"),
         ("ident-k3K2", "exact", "random"), ("ident-k3K2", "over", "random"), ("paper-top1", "exact", "near-truth"),
         ("paper-top1", "over", "random")]


@pytest.mark.parametrize("name, spec, init", CASES)
def test_em_log_likelihood_is_non_decreasing(name, spec, init):
    truth, rng, X, Y = data(name, 800, 11)
    template = truth.params if spec == "exact" else truth.over_specified()
    result = fit_em(X, Y, initial_params(template, init, rng, Y=Y), max_iter=150, tol=0.0)
    steps = np.diff(result.trace)
    assert np.all(steps >= -1e-8 * np.abs(result.trace[1:])), steps.min()
    assert result.trace[-1] > result.trace[0]
    assert result.status == "max-iter" and result.iterations == 150


def test_reference_expert_gate_stays_fixed():
    truth, rng, X, Y = data("ident-k3K2", 1000, 2)
    start = initial_params(truth.over_specified(), "near-truth", rng)
    fitted = fit_em(X, Y, start, max_iter=30).params
    assert fitted.beta0[-1] == 0.0 and np.all(fitted.beta1[-1] == 0.0)
    assert not np.allclose(fitted.beta1[:-1], start.beta1[:-1])


def test_exact_fit_recovers_the_truth_and_converges():
    truth, rng, X, Y = data("ident-k3K2", 20_000, 4)
    result = fit_em(X, Y, initial_params(truth.params, "near-truth", rng))
    assert result.converged
    np.testing.assert_allclose(result.params.a[:, 0], truth.params.a[:, 0], atol=0.05)
    np.testing.assert_allclose(result.params.b, truth.params.b, atol=0.05)
    np.testing.assert_allclose(result.params.sigma, truth.params.sigma, rtol=0.1)
    np.testing.assert_allclose(result.params.beta1[:, 0], truth.params.beta1[:, 0], atol=0.5)
    assert result.loglik >= truth.params.loglik(X, Y)


def test_expert_step_is_weighted_least_squares():
    truth, rng, X, Y = data("ident-k3K2", 500, 6)
    resp, _ = responsibilities(truth.params.log_joint(X, Y))
    updated = expert_step(truth.params, design(X), Y, resp)
    for i in range(3):
        w = np.sqrt(resp[:, i])
        coef, *_ = np.linalg.lstsq(design(X) * w[:, None], Y * w, rcond=None)
        np.testing.assert_allclose([updated.b[i], updated.a[i, 0]], coef, rtol=1e-7, atol=1e-9)
        resid = Y - design(X) @ coef
        assert updated.sigma[i] == pytest.approx(np.sum(resp[:, i] * resid ** 2) / resp[:, i].sum(), rel=1e-7)


def q_gate(params: MoEParams, theta: np.ndarray, X, resp, mask) -> float:
    trial = params.with_(beta0=theta[:, 0], beta1=theta[:, 1:])
    log_w = trial.log_gate(X, mask)
    return float(np.sum(resp[mask] * log_w[mask]))


def test_newton_direction_matches_finite_differences():
    truth, rng, X, Y = data("ident-k3K2", 400, 8)
    params = initial_params(truth.over_specified(), "near-truth", rng, noise=0.3)
    mask = params.selected(X)
    log_w = params.log_gate(X, mask)
    resp, _ = responsibilities(log_w + params.log_expert(X, Y))
    theta = np.hstack([params.beta0[:, None], params.beta1])
    free = [(i, p) for i in range(3) for p in range(2)]  # expert 4 is the reference
    h = 1e-4

    def shifted(*moves):
        t = theta.copy()
        for (i, p), step in moves:
            t[i, p] += step
        return q_gate(params, t, X, resp, mask)

    grad = np.array([(shifted((u, h)) - shifted((u, -h))) / (2 * h) for u in free])
    hess = np.array([[(shifted((u, h), (v, h)) - shifted((u, h), (v, -h)) - shifted((u, -h), (v, h))
                       + shifted((u, -h), (v, -h))) / (4 * h * h) for v in free] for u in free])
    expected = np.linalg.solve(-hess, grad)
    direction = gate_newton_direction(np.exp(log_w), resp, design(X), ref=3)
    np.testing.assert_allclose(direction[:3].ravel(), expected, rtol=1e-3, atol=1e-5)
    assert np.all(direction[3] == 0)


def test_gate_step_never_lowers_the_log_likelihood():
    truth, rng, X, Y = data("ident-k3K2", 600, 9)
    for _ in range(5):
        params = initial_params(truth.params, "random", rng, Y=Y)
        log_gate = params.log_gate(X)
        log_expert = params.log_expert(X, Y)
        resp, before = responsibilities(log_gate + log_expert)
        stepped, _ = gate_step(params, X, design(X), resp, log_gate, log_expert, ref=2)
        assert stepped.loglik(X, Y) >= before


def test_same_seed_same_fit():
    fits = []
    for _ in range(2):
        truth, rng, X, Y = data("ident-k3K2", 700, 10)
        fits.append(fit_em(X, Y, initial_params(truth.params, "random", rng, Y=Y), max_iter=50))
    np.testing.assert_array_equal(fits[0].trace, fits[1].trace)
    np.testing.assert_array_equal(fits[0].params.beta1, fits[1].params.beta1)


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init"):
        initial_params(preset("ident-k3K2").params, "truth", np.random.default_rng(0))
