"""Command-line budget specs: parsing, overrides and clear errors."""

from __future__ import annotations

import pytest

from moe2_cli.errors import UsageError
from moe2_cli.problem import Budgets
from moe2_cli.scenario.budgets import apply_budget_specs

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
    assert scenario.own_caps == {"latency": frozenset({"math", "code"}), "energy": frozenset()}


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
