"""Mean budgets through the command line: select reports the mean cost per category with its
interval beside the budget, and frontier sweeps a mean cap."""

from __future__ import annotations

import json

from tests.cli.test_select import select_json


def test_select_under_a_mean_energy_budget_reports_the_mean_cost(run_cli):
    _, payload = select_json(run_cli, "--budget", "energy=800", "--budget", "energy.mean=150")
    assert payload["status"] == "optimal"
    assert payload["budgets"]["energy_mean_j"]["math"] == 150.0
    mean = payload["mean_cost"]
    for cat, figure in mean["energy_j"].items():
        assert figure["low"] - 1e-9 <= figure["estimate"] <= figure["high"] + 1e-9  # equal costs: round-off
        assert figure["estimate"] <= 150.0 + 1e-9
        assert abs(payload["slack"][f"energy.mean.{cat}"] - (150.0 - figure["estimate"])) < 1e-9
    assert "evaluation queries" in mean["note"]
    # Without the mean cap the best selection spends more on average: the cap binds.
    _, free = select_json(run_cli, "--budget", "energy=800")
    assert "mean_cost" not in free and "energy_mean_j" not in free["budgets"]
    assert free["objective"] > payload["objective"]


def test_frontier_sweeps_a_mean_cap(run_cli):
    result = run_cli("frontier", "--sweep", "energy.mean=100:300:100", "--budget", "energy=800",
                     "--format", "json", "--no-timing")
    assert result.exit_code == 0, result.stderr
    points = json.loads(result.stdout)["points"]
    caps = [p["caps"]["energy.mean"] for p in points]
    assert caps == [100.0, 200.0, 300.0]
    values = [p["objective"] for p in points]
    assert values == sorted(values)  # a looser cap never lowers the optimum
    assert all(p["mean_cost"]["energy_j"]["math"]["estimate"] <= p["caps"]["energy.mean"] + 1e-9 for p in points)


def test_cpsat_refuses_mean_budgets_in_one_line(run_cli):
    result = run_cli("select", "--budget", "energy.mean=150", "--solver", "cpsat")
    assert result.exit_code == 2
    assert "cannot handle mean budgets exactly" in result.stderr and "Traceback" not in result.stderr
