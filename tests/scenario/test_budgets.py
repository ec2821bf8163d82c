"""Command-line budget specs: parsing, overrides and clear errors."""

from __future__ import annotations

import pytest

from moe2_cli.errors import InputError, UsageError
from moe2_cli.problem import Budgets
from moe2_cli.scenario.budgets import apply_budget_specs
from tests.conftest import ROOT

BASE = Budgets.build(("mcq", "math"), energy=100.0, latency=2.0, latency_by_cat={"math": 5.0})
OWN = {"latency": frozenset({"math"}), "energy": frozenset()}  # what the scenario sets per category


def test_global_then_category_override_in_any_order():
    b = apply_budget_specs(BASE, ["latency.mcq=1.5", "latency=3", "energy=80"])
    assert b.latency_s == (1.5, 3.0)
    assert b.energy_j == (80.0, 80.0)


def test_flat_cap_is_the_default_and_keeps_the_scenarios_own_category_caps():
    b = apply_budget_specs(BASE, ["latency=3"], OWN)
    assert b.latency_s == (3.0, 5.0)  # as `budgets: latency_s: 3` in the YAML would give


def test_category_cap_overrides_the_scenarios_own_and_none_lifts_it():
    assert apply_budget_specs(BASE, ["latency=3", "latency.math=8"], OWN).latency_s == (3.0, 8.0)
    assert apply_budget_specs(BASE, ["latency.math=none"], OWN).latency_s == (2.0, None)
    assert apply_budget_specs(BASE, ["latency=none"], OWN).latency_s == (None, 5.0)


def test_later_spec_for_the_same_cap_wins():
    assert apply_budget_specs(BASE, ["energy=50", "energy=70"], OWN).energy_j == (70.0, 70.0)


def test_scenario_records_which_categories_have_their_own_caps():
    from moe2_cli.scenario.scenario import load_scenario

    scenario = load_scenario("default")
    assert scenario.own_caps == {"latency": frozenset({"math", "code"}), "energy": frozenset(),
                                 "energy.mean": frozenset(), "latency.mean": frozenset()}


def test_mean_specs_set_mean_caps_beside_the_worst_case_ones():
    budgets = apply_budget_specs(BASE, ["energy.mean=30", "latency.mean.math=2", "energy=70"], OWN)
    assert budgets.energy_mean_j == (30.0, 30.0) and budgets.energy_j == (70.0, 70.0)
    assert budgets.latency_mean_s == (None, 2.0) and budgets.has_mean
    assert not apply_budget_specs(BASE, ["energy=70"], OWN).has_mean


def test_mean_caps_in_the_scenario_file(tmp_path):
    from moe2_cli.scenario.scenario import load_scenario

    text = (ROOT / "examples" / "default.yaml").read_text()
    text = text.replace("  energy_j: 800", "  energy_j: {max: 800, mean: 300}")
    text = text.replace("math:    {share: 0.25, latency_budget_s: 12.0}",
                        "math:    {share: 0.25, latency_budget_s: {max: 12.0, mean: 6}}")
    path = tmp_path / "mean.yaml"
    path.write_text(text)
    scenario = load_scenario(path)
    assert scenario.budgets.energy_j[0] == 800 and scenario.budgets.energy_mean_j == (300,) * 4
    assert scenario.budgets.latency_mean_s == (None, 6, None, None)
    assert scenario.budgets.latency_s[1] == 12.0
    assert scenario.own_caps["latency.mean"] == frozenset({"math"})


def test_a_bad_mean_cap_in_the_scenario_file_names_its_place(tmp_path):
    from moe2_cli.scenario.scenario import load_scenario

    text = (ROOT / "examples" / "default.yaml").read_text().replace("  energy_j: 800", "  energy_j: {mean: -3}")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=r"bad.yaml:\d+:\d+: budgets.energy_j.mean must be > 0"):
        load_scenario(path)


def test_none_lifts_a_cap():
    assert apply_budget_specs(BASE, ["energy=none"]).energy_j == (None, None)


def test_no_specs_keeps_scenario_defaults():
    assert apply_budget_specs(BASE, None) == BASE


@pytest.mark.parametrize("spec, message", [
    ("energy", "must look like"),
    ("energi=3", "did you mean .energy."),
    ("latency.maths=2", "unknown category 'maths'"),
    ("energy=abc", "must be a number"),
    ("energy=-1", "positive"),
    ("energy=nan", "positive"),
    ("energy=inf", "positive"),
    ("energy=1e16", "at most 1e[+]09"),
    ("latency.math=2e6", "at most 1e[+]06"),
])
def test_bad_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        apply_budget_specs(BASE, [spec])
