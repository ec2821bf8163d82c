"""The top-k sparse softmax gate: gradients, determinism, persistence, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.errors import InputError
from moe2_cli.gating.model import (
    SavedGate,
    TopKGate,
    floored,
    load_gate,
    mixture_loss,
    restrict,
    save_gate,
)
from moe2_cli.gating.pipeline import fit_gate, scenario_outcomes, split_queries
from moe2_cli.gating.topk import topk_softmax
from moe2_cli.problem import masks_to_bool
from moe2_cli.scenario.scenario import load_scenario


def numeric_grad(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f()
        x[idx] = old - eps
        down = f()
        x[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("k", [1, 2, 4])
def test_mixture_loss_gradient_matches_finite_differences(k):
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(7, 5))
    p = floored((rng.random((7, 5)) < 0.5).astype(float), 1e-3)
    selected = topk_softmax(logits, k) > 0
    _, grad = mixture_loss(logits, p, selected)
    np.testing.assert_allclose(grad, numeric_grad(lambda: mixture_loss(logits, p, selected)[0], logits), atol=1e-7)


@pytest.mark.parametrize("hidden", [0, 3])
def test_backward_matches_finite_differences(hidden):
    rng = np.random.default_rng(hidden)
    X, p = rng.normal(size=(9, 4)), floored(rng.random((9, 3)), 1e-3)
    gate = TopKGate(k=2, hidden=hidden, l2=0.0)
    params = gate._init(4, p, rng)
    for value in params.values():
        value += rng.normal(scale=0.3, size=value.shape)
    allowed = rng.random((9, 3)) > 0.3
    allowed[:, 0] = True
    _, grads = gate._loss(params, X, p, allowed, with_grad=True)
    for name, value in params.items():
        numeric = numeric_grad(lambda: gate._loss(params, X, p, allowed)[0], value)
        np.testing.assert_allclose(grads[name], numeric, atol=1e-6, err_msg=name)


def test_restrict_is_the_topk_softmax_inside_the_mask():
    logits = np.random.default_rng(0).normal(size=(50, 6))
    for mask in (0b000001, 0b101010, 0b111111):
        allowed = masks_to_bool(np.array([mask]), 6)[0]
        w = restrict(logits, 2, mask)
        np.testing.assert_array_equal(w, topk_softmax(logits, 2, allowed=allowed))
        assert np.all(w[:, ~allowed] == 0) and np.allclose(w.sum(axis=1), 1.0)
        assert np.all((w > 0).sum(axis=1) == min(2, allowed.sum()))
    np.testing.assert_array_equal(restrict(logits, 2), topk_softmax(logits, 2))


@pytest.fixture(scope="module")
def default_run():
    scenario = load_scenario(None)
    outcomes = scenario_outcomes(scenario, seed=0)
    split = split_queries(outcomes, 0)
    return scenario, outcomes, split


def test_gate_beats_the_best_single_expert_on_synthetic_outcomes(default_run):
    scenario, outcomes, split = default_run
    saved = fit_gate(outcomes, split, 2)
    held = outcomes.subset(split.held_out)
    weights = saved.gate.predict(saved.featurizer.transform(held))
    gate = (weights * held.scores).sum(axis=1).mean()
    best_single = held.scores.mean(axis=0).max()
    oracle = held.scores.max(axis=1).mean()
    assert best_single + 0.03 < gate < oracle


@pytest.mark.parametrize("hidden", [0, 8])
def test_same_seed_same_weights_same_bytes(default_run, tmp_path, hidden):
    _, outcomes, split = default_run
    files = []
    for i in range(2):
        saved = fit_gate(outcomes, split, 2, seed=4, hidden=hidden)
        files.append(tmp_path / f"gate{i}.npz")
        save_gate(files[-1], saved)
    assert files[0].read_bytes() == files[1].read_bytes()
    other = fit_gate(outcomes, split, 2, seed=5, hidden=hidden)
    save_gate(tmp_path / "other.npz", other)
    assert (tmp_path / "other.npz").read_bytes() != files[0].read_bytes()


def test_saved_gate_reloads_to_the_same_predictions(default_run, tmp_path):
    _, outcomes, split = default_run
    saved = fit_gate(outcomes, split, 2, hidden=4)
    save_gate(tmp_path / "g.npz", saved)
    loaded = load_gate(tmp_path / "g.npz")
    held = outcomes.subset(split.held_out)
    assert isinstance(loaded, SavedGate) and loaded.columns == outcomes.columns
    assert loaded.featurizer.spec == saved.featurizer.spec and loaded.gate.k == 2 and loaded.gate.hidden == 4
    assert loaded.gate.history_ == saved.gate.history_
    np.testing.assert_array_equal(loaded.gate.logits(loaded.featurizer.transform(held)),
                                  saved.gate.logits(saved.featurizer.transform(held)))


def test_a_file_that_is_not_a_gate_is_an_input_error(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(InputError, match="not a moe2 gate file"):
        load_gate(tmp_path / "x.npz")


def test_early_stopping_keeps_the_best_validation_weights(default_run):
    _, outcomes, split = default_run
    saved = fit_gate(outcomes, split, 2, patience=5, max_iter=400, sharpen=False)
    history = saved.gate.history_
    assert history.iterations == history.best_iteration + 5 < 400
    assert history.temperature == 1.0
