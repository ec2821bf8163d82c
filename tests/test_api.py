"""The Python API gives what the command line prints, speaks in its own terms, and its documented
example runs."""

from __future__ import annotations

import json
import re

import pytest

import moe2_cli
from moe2_cli.errors import UsageError
from moe2_cli.report import SelectionRecord
from moe2_cli.solvers import Limits
from tests.conftest import ROOT

SHIPPED = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))
FOLDS = 2  # two gates per scenario keep the comparison quick; the cache serves the second run


@pytest.mark.parametrize("scenario", SHIPPED)
def test_select_record_is_the_command_line_json(run_cli, scenario):
    record = moe2_cli.select(scenario, folds=FOLDS, timing=False)
    printed = run_cli("select", scenario, "--folds", FOLDS, "--format", "json", "--no-timing")
    assert printed.exit_code == 0, printed.output
    payload = json.loads(printed.stdout)
    ours = record.to_dict()
    assert list(ours) == list(payload)
    for key, value in payload.items():
        assert ours[key] == value, key
    assert ours["objective_ci"]["low"] <= record.objective <= ours["objective_ci"]["high"]
    assert record.selection == tuple(payload["selection"]) and record.status.value == payload["status"]


def test_the_record_cannot_be_changed_through_what_it_hands_out():
    record = moe2_cli.select("serve-local", folds=FOLDS)
    record.to_dict()["selection"].append("x")
    record["notes"].append("x")
    assert "x" not in record.to_dict()["selection"] and "x" not in record["notes"]


def test_budgets_as_a_mapping_mean_what_the_specs_mean(run_cli):
    mapped = moe2_cli.select(budgets={"energy": 150, "latency": None}, solver="greedy", seed=2, folds=FOLDS,
                             timing=False)
    specs = moe2_cli.select(budgets=["energy=150", "latency=none"], solver="greedy", seed=2, folds=FOLDS,
                            timing=False)
    printed = run_cli("select", "--budget", "energy=150", "--budget", "latency=none", "--solver", "greedy",
                      "--seed", "2", "--folds", FOLDS, "--format", "json", "--no-timing")
    assert mapped.to_dict() == specs.to_dict() == json.loads(printed.stdout)
    assert mapped["budgets"]["energy_j"] and all(v == 150 for v in mapped["budgets"]["energy_j"].values())


def test_frontier_points_are_select_records_plus_caps_and_pareto(run_cli):
    points = moe2_cli.frontier(sweeps=["energy=100:700:300"], folds=FOLDS, timing=False)
    printed = run_cli("frontier", "--sweep", "energy=100:700:300", "--folds", FOLDS, "--format", "json",
                      "--no-timing")
    assert printed.exit_code == 0, printed.output
    assert [p.to_dict() for p in points] == json.loads(printed.stdout)["points"]
    select_keys = list(moe2_cli.select(folds=FOLDS).to_dict())
    for point in points:
        assert list(point.to_dict()) == select_keys + ["caps", "pareto"]
        assert set(point.caps) == {"energy"} and point.caps == point["caps"]
    assert [p.pareto for p in points] == [p["pareto"] for p in json.loads(printed.stdout)["points"]]


def test_compare_rows_are_select_records_plus_the_gap_to_the_best():
    session = moe2_cli.session_for("serve-local", folds=FOLDS)
    records = moe2_cli.compare(session)
    select_keys = list(moe2_cli.select("serve-local", folds=FOLDS).to_dict())
    solved = [r for r in records if isinstance(r, SelectionRecord)]
    assert len(solved) >= 8
    best = max(r.objective for r in solved if r.objective is not None)
    for record in solved:
        assert list(record.to_dict()) == select_keys + ["gap_to_best"]
        if record.objective is not None:
            assert record["gap_to_best"] == pytest.approx(best - record.objective)
            assert record["objective_ci"] is not None


@pytest.mark.parametrize("call, message", [
    (lambda: moe2_cli.select(metric="acc"), "metric must be one of accuracy, neg-cross-entropy (got 'acc')"),
    (lambda: moe2_cli.select(solver="polyblok"), "solver must be one of polyblock, brb"),
    (lambda: moe2_cli.select(rule="cheapest"), "rule must be one of best, parsimonious (got 'cheapest')"),
    (lambda: moe2_cli.select(router="knn"), "router must be one of gate, lookup, label-lookup, logreg (got 'knn')"),
    (lambda: moe2_cli.select(confidence=1.5), "confidence must lie strictly between 0 and 1 (got 1.5)"),
    (lambda: moe2_cli.select(budgets={"energy": -3}), "budget energy must be a positive number (got '-3')"),
    (lambda: moe2_cli.select(budgets={"energi": 3}), "budget resource must be energy or latency"),
    (lambda: moe2_cli.select(top_k=99), "top_k must be between 1 and 11"),
    (lambda: moe2_cli.select(limits=Limits(time_s=0)), "time_limit must be > 0 seconds"),
    (lambda: moe2_cli.frontier(), "give exactly one kind of frontier"),
    (lambda: moe2_cli.frontier(sweeps=["energy=1:2"]), "sweep must look like energy=50:400:10"),
])
def test_bad_values_raise_value_errors_in_the_api_s_own_words(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert isinstance(err.value, UsageError)
    assert str(err.value).startswith(message) and "--" not in str(err.value)


def test_python_api_doc_example_runs():
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python-api.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/python-api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["record"].selection and namespace["record"]["objective_ci"] is not None
