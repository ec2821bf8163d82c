"""Output that reads well: frontier columns, tables that fit, help that is not cut, one unit per
format, plurals, and shell completion of choices."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from moe2_cli.cli import app
from moe2_cli.cli.app import COMMANDS, _load_command
from moe2_cli.cli.common import plural
from moe2_cli.cli.options import Aggregate, Metric, RouteOn, RouterName, Rule, SolverName, shipped_scenarios
from moe2_cli.gating.pipeline import ROUTERS
from moe2_cli.rules import DEFAULT_RULE, RULES
from moe2_cli.serve import AGGREGATES, DEFAULT_ROUTE_ON, ROUTE_ON
from moe2_cli.session import METRICS
from moe2_cli.solvers import DEFAULT_SOLVER, SOLVERS
from tests.conftest import CLI_ENV, ROOT

SWEEP = ("--sweep", "energy=100:700:200", "--folds", "2")


def _run(*args: str, columns: int = 200):
    return CliRunner().invoke(app, [str(a) for a in args], env={**CLI_ENV, "COLUMNS": str(columns)})


def test_frontier_csv_gives_the_interval_as_two_numbers(run_cli):
    result = run_cli("frontier", *SWEEP, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    points = json.loads(run_cli("frontier", *SWEEP, "--format", "json").stdout)["points"]
    assert "ci" not in rows[0] and {"f_low", "f_high"} <= set(rows[0])
    for row, point in zip(rows, points, strict=True):
        low, high = float(row["f_low"]), float(row["f_high"])
        assert low <= float(row["objective"]) <= high
        assert (low, high) == pytest.approx((point["objective_ci"]["low"], point["objective_ci"]["high"]))


@pytest.mark.parametrize("scenario", ["default", "large", "llmrouter-edge"])
def test_frontier_table_fits_100_columns_without_cutting_an_expert(scenario):
    result = _run("frontier", scenario, *SWEEP, columns=100)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    points = json.loads(_run("frontier", scenario, *SWEEP, "--format", "json").stdout)["points"]
    shown = {cell.strip() for line in lines for cell in line.split("│")}
    for point in points:
        assert set(point["selection"]) <= shown
    assert "left out at this width" in result.stdout


def test_a_wide_terminal_keeps_every_frontier_column():
    result = _run("frontier", *SWEEP, columns=200)
    assert "left out" not in result.stdout and "math s" in result.stdout


def _all_commands():
    """(path, click command) for every command and subcommand."""
    for name in COMMANDS:
        command = _load_command(name)
        subs = getattr(command, "commands", None)
        if subs:
            yield from ((f"{name} {sub}", cmd) for sub, cmd in subs.items())
        else:
            yield name, command


@pytest.mark.parametrize("path, command", list(_all_commands()))
def test_help_is_whole_sentences_within_100_columns(path, command):
    for param in command.params:
        assert "\n" not in (getattr(param, "help", None) or ""), (path, param.name)
    result = _run(*path.split(), "--help", columns=100)
    assert result.exit_code == 0, result.output
    assert max(cell_len(line) for line in result.stdout.splitlines()) <= 100  # as the terminal counts
    assert "…" not in result.stdout


@pytest.mark.parametrize("command", ["select", "frontier"])
def test_every_solver_name_is_whole_in_the_help(command):
    text = " ".join(_run(command, "--help", columns=100).stdout.split())
    assert all(f" {name}," in text or f" {name}." in text for name in SOLVERS)


def test_units_are_said_once_in_the_root_help():
    result = _run("--help", columns=100)
    assert "percent" in result.stdout and "fractions" in result.stdout


def test_gating_check_table_shows_f_in_percent_as_select_does(run_cli):
    result = run_cli("gating", "check", "serve-local", "--subsets", "2", "--folds", "2", "--queries", "300")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "F of the full set" in line)
    assert line.rstrip(" │").endswith("%")
    payload = json.loads(run_cli("gating", "check", "serve-local", "--subsets", "2", "--folds", "2", "--queries",
                                 "300", "--format", "json").stdout)
    assert 0 < payload["full_set_F"] < 1


@pytest.mark.parametrize("count, word, many, text", [
    (1, "expert", None, "1 expert"), (0, "expert", None, "0 experts"), (2, "LLM", None, "2 LLMs"),
    (1, "category", "categories", "1 category"), (3, "category", "categories", "3 categories"),
])
def test_plural(count, word, many, text):
    assert plural(count, word, many) == text


def test_a_one_expert_selection_is_not_called_experts(run_cli):
    result = run_cli("select", "serve-local", "--solver", "best-single", "--folds", "2")
    assert result.exit_code == 0, result.output
    assert "selection of 1 expert " in result.stdout
    assert "1 experts" not in result.stdout


def test_choices_are_the_registries():
    assert [s.value for s in SolverName] == list(SOLVERS) and DEFAULT_SOLVER == "brb"
    assert [m.value for m in Metric] == list(METRICS)
    assert [r.value for r in Rule] == list(RULES) and DEFAULT_RULE in RULES
    assert [r.value for r in RouterName] == list(ROUTERS)
    assert [a.value for a in Aggregate] == list(AGGREGATES)
    assert [r.value for r in RouteOn] == list(ROUTE_ON) and DEFAULT_ROUTE_ON in ROUTE_ON
    assert shipped_scenarios() == sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))


def _completions(command_path: list[str], param_name: str, incomplete: str) -> list[str]:
    command = _load_command(command_path[0])
    for sub in command_path[1:]:
        command = command.commands[sub]
    param = next(p for p in command.params if p.name == param_name)
    ctx = command.make_context(command_path[-1], [], resilient_parsing=True)
    return [item.value for item in param.shell_complete(ctx, incomplete)]


def test_completion_offers_solvers_and_shipped_scenarios():
    assert _completions(["select"], "solver", "") == list(SOLVERS)
    assert _completions(["frontier"], "solver", "cp") == ["cpsat", "cpsat-surrogate"]
    assert _completions(["select"], "scenario", "") [:len(shipped_scenarios())] == shipped_scenarios()
    assert _completions(["route"], "scenario", "lar") == ["large"]
    assert _completions(["select"], "metric", "n") == ["neg-cross-entropy"]


def test_a_reader_that_leaves_the_pipe_gets_silence_and_141():
    """`moe2 ... | head`: the rest of the output has nowhere to go, which is not an error."""
    command = [sys.executable, "-m", "moe2_cli", "stats", "simulate", "-n", "200000", "--format", "csv"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read()
        code = proc.wait(timeout=120)
    assert first.startswith(b"x") and code == 141 and stderr == b""
