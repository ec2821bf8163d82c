"""`moe2 select`, `compare` and `frontier` end to end on the shipped scenarios."""

from __future__ import annotations

import csv
import io
import json
import re

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
    (["--solver", "polyblok"], "'polyblok' is not one of 'polyblock', 'brb'"),
    (["--top-k", "0"], "--top-k must be between 1 and 11"),
    (["--top-k", "999"], "--top-k must be between 1 and 11"),
    (["--seed", "-1"], "invalid value for '--seed'"),
    (["--min-accuracy", "75"], "--min-accuracy must be within 0-1"),
    (["--min-accuracy", "-1"], "--min-accuracy must be within 0-1"),
    (["--min-accuracy", "nan"], "--min-accuracy must be within 0-1"),
    (["--min-accuracy", "high"], "--min-accuracy must be a fraction"),
    (["--min-accuracy", "0.5", "--metric", "neg-cross-entropy"], "--min-accuracy needs --metric accuracy"),
    (["--sede", "1"], "no such option: --sede"),
    (["--folds", "1000"], "invalid value for '--folds'"),
    (["--metric", "f1"], "invalid value for '--metric': 'f1' is not one of 'accuracy'"),
    (["--time-limit", "-1"], "--time-limit must be > 0"),
])
def test_bad_usage_exits_2_with_one_line(run_cli, args, message):
    result = run_cli("select", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert [line.startswith("moe2: ") for line in result.stderr.splitlines()] == [True]


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


# ---------------------------------------------------------------- no selection: exit 1, nothing invented

TINY = ROOT / "tests" / "fixtures" / "good" / "scenario.yaml"


def test_time_limit_without_a_selection_exits_1_with_nulls_not_inf(run_cli):
    # cpsat itself answers with greedy's selection when it enumerates nothing; its surrogate does not
    result, payload = select_json(run_cli, "--solver", "cpsat-surrogate", "--time-limit", "0.00001",
                                  "--min-accuracy", "0.5")
    assert result.exit_code == 1, result.output
    assert payload["status"] == "limit" and payload["selection"] == []
    assert set(payload["energy_j"].values()) == set(payload["latency_s"].values()) == {None}
    assert payload["references"]["oracle"] is None and payload["references"]["best_single_feasible"] > 0
    assert len(payload["experts"]) == 11 and not any("inf" in e["why"] for e in payload["experts"])
    assert result.stderr == "moe2: cpsat-surrogate stopped at its limit before finding a selection\n"


def test_infeasible_select_explains_every_expert_and_reports_no_figures(run_cli):
    result, payload = select_json(run_cli, "--budget", "energy=0.001")
    assert result.exit_code == 1
    assert [e["why"].split(":")[0] for e in payload["experts"]] == ["cannot fit alone"] * 11
    assert set(payload["energy_j"].values()) == {None} and set(payload["slack"].values()) == {None}
    assert all(v is None for v in payload["references"].values())
    table = run_cli("select", "--budget", "energy=0.001")
    assert table.stdout.count("cannot fit alone") == 11 and "0.0J" not in table.stdout


def test_all_feasible_does_not_claim_that_no_single_expert_fits(run_cli):
    result = run_cli("select", TINY, "--solver", "all-feasible", "--budget", "latency=0.5")
    assert result.exit_code == 1
    assert "no single expert fits" not in result.stderr
    assert "all-feasible found no selection" in result.stderr and "single experts fit" in result.stderr


def test_negative_cross_entropy_is_not_printed_as_a_percentage(run_cli):
    result = run_cli("select", TINY, "--metric", "neg-cross-entropy")
    assert result.exit_code == 0, result.output
    assert "%" not in result.stdout
    assert re.search(r"F = -\d+\.\d{4} vs", result.stdout)


def test_percentage_target_is_accepted(run_cli):
    assert run_cli("select", TINY, "--min-accuracy", "1%").exit_code == 0
    assert run_cli("select", TINY, "--min-accuracy", "100%").exit_code == 1


def test_compare_exits_1_when_every_solver_is_infeasible(run_cli):
    result = run_cli("compare", TINY, "--budget", "energy=0.001", "--format", "json")
    assert result.exit_code == 1
    assert {p["status"] for p in json.loads(result.stdout)} == {"infeasible"}
    assert result.stderr == "moe2: no selection meets the budgets: no single expert fits\n"


def test_compare_skips_exhaustive_above_its_size_and_goes_on(run_cli, tmp_path):
    big = tmp_path / "big.yaml"  # the large example plus two servers: 28 experts
    big.write_text((ROOT / "examples" / "large.yaml").read_text() + "".join(
        f"  - name: extra-{i}\n    profile: jetson-agx-orin-64gb\n    transmission_s: 0.02\n"
        f"    llms: [qwen2.5-7b-instruct, qwen2.5-3b-instruct, qwen2.5-1.5b-instruct, qwen2.5-0.5b-instruct]\n"
        for i in range(2)))
    result = run_cli("compare", big, "--time-limit", "0.2", "--format", "json", "--no-timing")
    assert result.exit_code == 0, result.output
    rows = {p["solver"]: p for p in json.loads(result.stdout)}
    assert rows["exhaustive"]["status"] == "skipped" and "at most 26 experts" in rows["exhaustive"]["reason"]
    assert rows["polyblock"]["objective"] > 0 and rows["greedy"]["objective"] > 0


def test_frontier_without_feasible_points_exits_1_and_leaves_them_blank(run_cli):
    result = run_cli("frontier", TINY, "--sweep", "energy=1:3:1", "--format", "csv")
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 3
    for row in rows:
        assert row["status"] == "infeasible"
        assert row["objective"] == row["energy_j"] == row["latency_s.math"] == ""
    assert result.stderr == "moe2: no point of the frontier has a selection (3 budgets tried)\n"


def test_swept_default_cap_leaves_category_caps_alone(run_cli):
    result = run_cli("frontier", TINY, "--sweep", "latency=1:2:1", "--budget", "latency.mcq=3", "--format", "json")
    caps = [p["budgets"]["latency_s"] for p in json.loads(result.stdout)["points"]]
    assert caps == [{"mcq": 3.0, "math": 5.0}] * 2  # mcq set on the command line, math in the scenario
    swept = run_cli("frontier", TINY, "--sweep", "latency=1:2:1", "--format", "json")
    assert [p["budgets"]["latency_s"] for p in json.loads(swept.stdout)["points"]] == [
        {"mcq": 1.0, "math": 5.0}, {"mcq": 2.0, "math": 5.0}]


@pytest.mark.parametrize("sweeps, message", [
    (["energy=1:1000:1", "latency=1:1000:1"], "at most 1000 in all"),
    (["energy=1e-300:1e9:1e-300"], "more than 1000 points"),
    (["energy=1:2e9:1e6"], "at most 1e+09"),
])
def test_sweeps_are_bounded_before_any_work(run_cli, sweeps, message):
    result = run_cli("frontier", TINY, *[x for s in sweeps for x in ("--sweep", s)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_expert_ids_are_never_cut():
    from typer.testing import CliRunner

    from moe2_cli.cli import app
    from moe2_cli.scenario.scenario import load_scenario

    ids = set(load_scenario("default").instance.expert_ids)
    for width in ("80", "120"):
        env = {"NO_COLOR": "1", "COLUMNS": width, "TERM": "dumb"}
        shown = CliRunner().invoke(app, ["select"], env=env).stdout
        assert [row[0] for row in _table_rows(shown) if row[0]] == sorted(ids, key=shown.index)
        front = CliRunner().invoke(app, ["frontier", "--sweep", "energy=300:600:300"], env=env).stdout
        selection = [row[-1] for row in _table_rows(front) if row[-1]]
        assert len(selection) >= 3 and set(selection) <= ids, front


def _table_rows(text: str) -> list[list[str]]:
    """The cells of the first table in ``text`` (the panel after it has the same border)."""
    table = text.split("└", 1)[0]
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in table.splitlines()
            if line.startswith("│")]
