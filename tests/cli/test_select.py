"""`moe2 select`, `compare` and `frontier` end to end on the shipped scenarios."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.conftest import ROOT

DEFAULT_BUDGETS = ["--budget", "energy=800", "--budget", "latency=3"]


def select_json(run_cli, *args):
    result = run_cli("select", *args, "--format", "json", "--no-timing")
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def test_select_default_scenario_is_feasible_and_beats_single_experts(run_cli):
    result, payload = select_json(run_cli)
    assert result.exit_code == 0, result.output
    for key in ("status", "solver", "selection", "objective", "energy_j", "latency_s", "budgets", "evaluations",
                "wall_s", "binding", "slack", "references"):
        assert key in payload
    assert payload["status"] == "optimal"
    for cat, used in payload["energy_j"].items():
        assert used <= payload["budgets"]["energy_j"][cat] + 1e-9
    for cat, used in payload["latency_s"].items():
        cap = payload["budgets"]["latency_s"][cat]
        assert cap is None or used <= cap + 1e-9
    assert all(v >= -1e-9 for v in payload["slack"].values())
    assert payload["objective"] >= payload["references"]["best_single_feasible"] - 1e-12


def test_same_seed_same_bytes(run_cli):
    first = run_cli("select", "--seed", "3", "--format", "json", "--no-timing")
    second = run_cli("select", "--seed", "3", "--format", "json", "--no-timing")
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout


def test_table_explains_every_expert(run_cli):
    result = run_cli("select")
    assert result.exit_code == 0, result.output
    assert "cannot fit alone" in result.stdout or "adding it breaks" in result.stdout
    assert "best single expert" in result.stdout
    assert result.stdout.count("/") >= 11  # one row per expert id


def test_impossible_budget_exits_1_with_a_reason(run_cli):
    result = run_cli("select", "--budget", "energy=0.001", "--format", "json")
    assert result.exit_code == 1, result.output
    assert "no selection meets the budgets" in result.stderr
    assert json.loads(result.stdout)["status"] == "infeasible"


def test_min_accuracy_gate(run_cli):
    assert run_cli("select", "--min-accuracy", "0.1").exit_code == 0
    missed = run_cli("select", "--min-accuracy", "0.99")
    assert missed.exit_code == 1
    assert "below --min-accuracy" in missed.stderr


@pytest.mark.parametrize("args, message", [
    (["--budget", "energy"], "must look like"),
    (["--budget", "latency.maths=3"], "unknown category"),
    (["--solver", "polyblok"], "did you mean 'polyblock'"),
    (["--top-k", "0"], "--top-k must be >= 1"),
    (["--metric", "f1"], "--metric must be one of"),
    (["--time-limit", "-1"], "--time-limit must be > 0"),
])
def test_bad_usage_exits_2_with_one_line(run_cli, args, message):
    result = run_cli("select", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_csv_has_one_row_per_expert_matching_the_json(run_cli):
    result = run_cli("select", "--format", "csv", "--no-timing")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    _, payload = select_json(run_cli)
    assert [r["id"] for r in rows] == [e["id"] for e in payload["experts"]]
    assert {r["status"] for r in rows} == {"optimal"}
    chosen = [r["id"] for r in rows if r["selected"] == "True"]
    assert chosen == payload["selection"]


def test_json_experts_explain_every_expert(run_cli):
    _, payload = select_json(run_cli)
    experts = payload["experts"]
    assert [e["id"] for e in experts if e["selected"]] == payload["selection"]
    assert all(set(e) == {"id", "selected", "f_alone", "why"} for e in experts)
    assert all((e["why"] == "selected") == e["selected"] for e in experts)


def test_compare_exact_solvers_agree(run_cli):
    result = run_cli("compare", "--format", "json", "--no-timing")
    assert result.exit_code == 0, result.output
    payload = {p["solver"]: p for p in json.loads(result.stdout)}
    exact = [payload[s]["objective"] for s in ("polyblock", "brb", "exhaustive", "cpsat")]
    assert max(exact) - min(exact) < 1e-9
    best = max(p["objective"] or 0 for p in payload.values())
    assert max(exact) == pytest.approx(best)


def test_llmrouter_scenario_selects_on_real_outcomes(run_cli):
    result, payload = select_json(run_cli, ROOT / "examples" / "llmrouter-edge.yaml")
    assert result.exit_code == 0, result.output
    assert payload["objective"] >= payload["references"]["best_single_feasible"] - 1e-12


def test_frontier_json_and_csv(run_cli, tmp_path):
    result = run_cli("frontier", "--sweep", "energy=100:900:200", "--format", "json", "--no-timing")
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["points"]
    assert len(points) == 5
    assert any(p["pareto"] for p in points)
    values = [p["objective"] or 0.0 for p in points]
    assert values == sorted(values)
    csv_out = run_cli("frontier", "--sweep", "energy=100:900:200", "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(csv_out.stdout)))) == 5


def test_frontier_plot_and_usage_errors(run_cli, tmp_path):
    png = tmp_path / "f.png"
    result = run_cli("frontier", "--sweep", "energy=100:900:400", "--plot", png, "--compare")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert run_cli("frontier").exit_code == 2
    assert run_cli("frontier", "--sweep", "energy=1:2", "--format", "json").exit_code == 2
    assert run_cli("frontier", "--sweep", "energy=1:2:1", "--plot", tmp_path / "x.gif").exit_code == 2


def test_shipped_scenarios_by_name(run_cli):
    result = run_cli("show", "large", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["experts"]) == 20
    missing = run_cli("show", "no-such-scenario")
    assert missing.exit_code == 2
    assert "cannot read file" in missing.stderr
