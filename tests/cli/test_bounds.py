"""Bounded work: every count of work a command does has an upper bound in its --help, long work
shows progress on a terminal, and Ctrl-C ends it with exit 130 and one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import typer

from moe2_cli.cli import app
from moe2_cli.cli.stats import MAX_TABLE_SAMPLES
from moe2_cli.cli.synth import MAX_SYNTH_QUERIES
from moe2_cli.errors import EXIT_INTERRUPTED
from tests.conftest import ROOT

# Commands that do work in proportion to a count; serve's and measure's numbers are limits on
# traffic they are sent, not counts of work they start.
WORK_COMMANDS = ("select", "frontier", "compare", "synth", "route", "gating", "stats")
# Ranges that depend on the scenario or the model: the core checks them (and names the bound).
CHECKED_BY_THE_CORE = {"--top-k", "--split", "--n-min"}
HUGE = "99999999999999999999"


def _int_options():
    root = typer.main.get_command(app)
    for name in WORK_COMMANDS:
        command = root.commands[name]  # type: ignore[attr-defined]
        commands = getattr(command, "commands", {name: command})
        for sub_name, sub in commands.items():
            for param in sub.params:
                if getattr(param.type_descriptor, "annotation", None) is int:
                    yield " ".join(dict.fromkeys((name, sub_name))), param


@pytest.mark.parametrize("command,param", list(_int_options()), ids=lambda v: getattr(v, "opts", [v])[0])
def test_every_count_has_an_upper_bound(command, param):
    if param.opts[0] in CHECKED_BY_THE_CORE:
        return
    assert param.max is not None, f"moe2 {command} {param.opts[0]} has no upper bound"


@pytest.mark.parametrize("args", [
    ["synth", "--queries", HUGE, "--out", "out.jsonl"],
    ["synth", "--queries", str(MAX_SYNTH_QUERIES + 1), "--out", "out.jsonl"],
    ["stats", "simulate", "-n", "10000001"],
    ["stats", "fit", "samples.csv", "--max-iter", HUGE],
    ["gating", "check", "--subsets", HUGE],
    ["gating", "check", "--samples", HUGE],
    ["gating", "check", "--folds", HUGE],
    ["select", "--top-k", HUGE],
    ["stats", "fit", "samples.csv", "--split", HUGE],
    ["stats", "rates", "--n-min", HUGE],
])
def test_a_count_past_its_bound_is_one_line_and_exit_2(run_cli, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples.csv").write_text("x1,y\n0.5,1.0\n", encoding="utf-8")
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("moe2: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_simulate_refuses_a_table_of_millions_before_drawing_any(run_cli):
    result = run_cli("stats", "simulate", "-n", "10000000")
    assert result.exit_code == 2, result.output
    assert f"at most {MAX_TABLE_SAMPLES:,} samples" in result.stderr and "--out" in result.stderr
    assert result.stdout == ""
    assert run_cli("stats", "simulate", "-n", str(MAX_TABLE_SAMPLES), "--format", "csv").exit_code == 0


def _moe2(*args: str, terminal: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    env.pop("TTY_COMPATIBLE", None)
    if terminal:
        env["TTY_COMPATIBLE"] = "1"  # rich draws on stderr as on a terminal
    return subprocess.Popen([sys.executable, "-m", "moe2_cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.mark.parametrize("where", [["--out", "s.csv"], ["--format", "csv"]])
def test_writing_samples_shows_progress_on_a_terminal_and_keeps_stdout_for_the_data(tmp_path, where):
    process = _moe2("stats", "simulate", "-n", "200000", *[str(tmp_path / w) if w == "s.csv" else w for w in where],
                    terminal=True)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert b"writing samples" in err and b"/200000" in err
    assert len(err) < 100_000  # the bar, never the samples
    if "--format" in where:
        assert out.count(b"\n") == 200_001  # the header and every sample


def test_ctrl_c_while_writing_samples_exits_130_with_one_line_and_leaves_nothing(tmp_path):
    process = _moe2("stats", "simulate", "-n", "10000000", "--out", str(tmp_path / "s.csv"), terminal=True)
    assert process.stderr is not None
    first = process.stderr.read(1)  # the progress bar's first frame: the samples are being written
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=300)
    err = (first + rest).decode()
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "moe2: interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
