"""Model, presets, sampling, parameter files and sample files."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.errors import InputError
from moe2_cli.stats.model import MoEParams, split_expert, to_reference, translate_gate
from moe2_cli.stats.params_file import dump_truth, load_truth, parse_truth
from moe2_cli.stats.presets import PRESETS, preset
from moe2_cli.stats.samples import parse_samples, samples_to_text
from moe2_cli.stats.xdist import XDist


def test_presets_are_as_documented():
    ident = preset("ident-k3K2").params
    np.testing.assert_array_equal(ident.beta0, [0.5, -1, 0])
    np.testing.assert_array_equal(ident.beta1[:, 0], [3, 6, 0])
    np.testing.assert_array_equal(ident.a[:, 0], [0.5, 2, 1])
    np.testing.assert_array_equal(ident.b, [0, 2, -2])
    np.testing.assert_array_equal(ident.sigma, [0.09, 0.16, 0.12])
    assert (ident.top_k, ident.select_on) == (2, "score")
    top1 = preset("paper-top1")
    np.testing.assert_array_equal(top1.params.beta0, [-8, 0])
    np.testing.assert_array_equal(top1.params.a[:, 0], [-20, 20])
    assert (top1.params.top_k, top1.params.select_on, top1.x.kind) == (1, "logit", "normal")


def test_ident_preset_selects_expert_one_everywhere_with_two_then_three():
    truth = preset("ident-k3K2")
    X = np.linspace(-1, 1, 401)[:, None]
    X = X[X[:, 0] != 0]
    selected = truth.params.selected(X)
    assert selected[:, 0].all()
    np.testing.assert_array_equal(selected[:, 1], X[:, 0] > 0)
    np.testing.assert_array_equal(selected[:, 2], X[:, 0] < 0)


def test_unknown_preset_names_the_choices():
    with pytest.raises(KeyError, match="ident-k3K2"):
        preset("nope")


@pytest.mark.parametrize("name", list(PRESETS))
def test_translation_and_split_leave_the_density_unchanged(name):
    truth = preset(name)
    rng = np.random.default_rng(0)
    X, Y = truth.sample(rng, 2000)
    base = truth.params.log_density(X, Y)
    moved = translate_gate(truth.params, 1.7, np.array([-2.5]))
    np.testing.assert_allclose(moved.log_density(X, Y), base, atol=1e-10)
    np.testing.assert_allclose(to_reference(moved).log_density(X, Y), base, atol=1e-10)
    if name == "ident-k3K2":  # expert 1 is selected everywhere, so its split is the same density
        split = truth.over_specified()
        assert (split.n_experts, split.top_k) == (4, 3)
        np.testing.assert_allclose(split.log_density(X, Y), base, atol=1e-10)


def test_split_expert_halves_the_mass_of_the_copies():
    params = split_expert(preset("ident-k3K2").params, 0)
    np.testing.assert_allclose(np.exp(params.beta0[:2]).sum(), np.exp(0.5))
    np.testing.assert_array_equal(params.a[:2], [[0.5], [0.5]])


def test_samples_follow_the_conditional_mixture():
    truth = preset("ident-k3K2")
    X, Y = truth.sample(np.random.default_rng(3), 200_000)
    inside = np.abs(X[:, 0] - 0.5) < 0.02
    x0 = np.array([[0.5]])
    expected_mean = float(truth.params.gate(x0)[0] @ truth.params.means(x0)[0])
    assert abs(Y[inside].mean() - expected_mean) < 0.03
    # The share of y near expert 2's mean matches its gate weight (experts 1 and 2 are far apart there).
    share = np.mean(Y[inside] > 1.5)
    assert abs(share - truth.params.gate(x0)[0, 1]) < 0.02


def test_same_seed_same_samples():
    truth = preset("paper-top1")
    a = truth.sample(np.random.default_rng(5), 100)
    b = truth.sample(np.random.default_rng(5), 100)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_params_are_read_only_and_validated():
    params = preset("ident-k3K2").params
    with pytest.raises(ValueError):
        params.beta0[0] = 3.0
    with pytest.raises(ValueError, match="top_k"):
        params.with_(top_k=4)
    with pytest.raises(ValueError, match="sigma"):
        params.with_(sigma=[1.0, -1.0, 1.0])


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_file_round_trip(name, tmp_path):
    truth = preset(name)
    path = tmp_path / "model.yaml"
    path.write_text(dump_truth(truth))
    back = load_truth(path)
    for field in ("beta0", "beta1", "a", "b", "sigma"):
        np.testing.assert_array_equal(getattr(back.params, field), getattr(truth.params, field))
    assert (back.params.top_k, back.params.select_on, back.x) == (truth.params.top_k, truth.params.select_on, truth.x)


def test_parameter_file_reports_every_problem_with_its_place():
    text = ("top_k: 5\n"
            "select_on: bias\n"
            "experts:\n"
            "  - {beta0: 0.5, beta1: [3.0], a: [0.5], b: 0, sigma: -1}\n"
            "  - {beta0: 1, beta1: [1, 2], a: [1], b: 0, sigma: 1, colour: red}\n")
    with pytest.raises(InputError) as err:
        parse_truth(text, "m.yaml")
    lines = err.value.lines()
    sigma_col = text.splitlines()[3].index("-1}") + 1
    assert f"m.yaml:4:{sigma_col}: experts[0].sigma: must be > 0 (got -1)" in lines
    assert any(line.startswith("m.yaml:5:") and "experts[1].beta1" in line for line in lines)
    assert any(line.startswith("m.yaml:5:") and "colour" in line for line in lines)
    assert any(line.startswith("m.yaml:1:8: top_k") for line in lines)
    assert any(line.startswith("m.yaml:2:12: select_on") for line in lines)


@pytest.mark.parametrize("text", ["", "[1, 2]", "a: [1", "experts: []\ntop_k: 1", "top_k: 1\nexperts: [{beta0: 0}]",
                                  "top_k: 1\nx: {dist: cauchy}\nexperts: [{beta0: 0, beta1: 1, a: 1, b: 0, sigma: 1}]",
                                  "top_k: true\nexperts: [{beta0: 0, beta1: 1, a: 1, b: 0, sigma: .inf}]"])
def test_malformed_parameter_files_raise_input_errors(text):
    with pytest.raises(InputError):
        parse_truth(text, "bad.yaml")


def test_missing_parameter_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_truth(tmp_path / "absent.yaml")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_sample_files_round_trip_exactly(fmt):
    X, Y = preset("ident-k3K2").sample(np.random.default_rng(1), 50)
    X2 = np.hstack([X, -X])
    back_X, back_Y = parse_samples(samples_to_text(X2, Y, fmt))
    np.testing.assert_array_equal(back_X, X2)
    np.testing.assert_array_equal(back_Y, Y)


@pytest.mark.parametrize("text, where", [
    ("x1,y\n0.5,1\n0.2\n", "<samples>:3"),
    ("x1,y\n0.5,nan\n", "<samples>:2"),
    ("x1,z\n0.5,1\n", "<samples>:1"),
    ('{"x": [1], "y": 2}\n{"x": [1, 2], "y": 2}\n', "<samples>:2"),
    ('{"x": [1], "y": 2}\n{oops\n', "<samples>:2"),
    ("x1,y\n", "no samples"),
])
def test_malformed_samples_name_the_line(text, where):
    with pytest.raises(InputError) as err:
        parse_samples(text)
    assert where in str(err.value)


def test_quadrature_weights_integrate_polynomials():
    points, weights = XDist("uniform", 2, -1.0, 3.0).nodes()
    assert weights.sum() == pytest.approx(1.0)
    assert weights @ points[:, 0] ** 2 == pytest.approx((27 + 1) / 12)
    points, weights = XDist("normal", 1, mean=1.0, std=2.0).nodes()
    assert weights @ points[:, 0] == pytest.approx(1.0)


def test_model_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        MoEParams(beta0=[0, 0], beta1=[[1], [2]], a=[[1]], b=[0, 0], sigma=[1, 1], top_k=1)


def test_exponent_notation_without_a_dot_is_a_number():
    truth = parse_truth("top_k: 1\nexperts: [{beta0: 0, beta1: [1e2], a: [2E-1], b: -3e0, sigma: 1e-3}]\n")
    p = truth.params
    assert (p.beta1[0, 0], p.a[0, 0], p.b[0], p.sigma[0]) == (100, 0.2, -3, 1e-3)


def test_values_that_would_overflow_are_refused():
    with pytest.raises(InputError, match="beta0: must be in"):
        parse_truth("top_k: 1\nexperts: [{beta0: 800, beta1: [1], a: [1], b: 0, sigma: 1}]\n")
