"""The Python API gives what the command line prints, and its documented example runs."""

from __future__ import annotations

import json
import re

import pytest

import moe2_cli
from tests.conftest import ROOT

SHIPPED = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("scenario", SHIPPED)
def test_select_matches_the_command_line_json(run_cli, scenario):
    result = moe2_cli.select(scenario)
    printed = run_cli("select", scenario, "--format", "json", "--no-timing")
    assert printed.exit_code == 0, printed.output
    payload = json.loads(printed.stdout)
    assert list(result.selection) == payload["selection"] and result.mask == payload["mask"]
    assert result.objective == payload["objective"]
    assert result.status.value == payload["status"]
    assert result.evaluations == payload["evaluations"]


def test_select_takes_budgets_as_a_mapping_like_the_command_line(run_cli):
    result = moe2_cli.select(budgets={"energy": 150, "latency": None}, solver="greedy", seed=2)
    printed = run_cli("select", "--budget", "energy=150", "--budget", "latency=none", "--solver", "greedy",
                      "--seed", "2", "--format", "json", "--no-timing")
    payload = json.loads(printed.stdout)
    assert list(result.selection) == payload["selection"] and result.objective == payload["objective"]


def test_frontier_matches_the_command_line_json(run_cli):
    points = moe2_cli.frontier(sweeps=["energy=100:700:200"])
    printed = json.loads(run_cli("frontier", "--sweep", "energy=100:700:200", "--format", "json").stdout)
    assert [p.result.objective for p in points] == [p["objective"] for p in printed["points"]]
    assert [p.pareto for p in points] == [p["pareto"] for p in printed["points"]]


def test_python_api_doc_example_runs():
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python-api.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/python-api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["result"].selection
