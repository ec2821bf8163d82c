"""Command-line budget specs: parsing, overrides and clear errors."""

from __future__ import annotations

import pytest

from moe2_cli.errors import UsageError
from moe2_cli.problem import Budgets
from moe2_cli.scenario.budgets import apply_budget_specs

BASE = Budgets.build(("mcq", "math"), energy=100.0, latency=2.0, latency_by_cat={"math": 5.0})


def test_global_then_category_override_in_any_order():
    b = apply_budget_specs(BASE, ["latency.mcq=1.5", "latency=3", "energy=80"])
    assert b.latency_s == (1.5, 3.0)
    assert b.energy_j == (80.0, 80.0)


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
])
def test_bad_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        apply_budget_specs(BASE, [spec])
