"""The command line as a whole: a light start, one error style, --debug, completion, Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from moe2_cli.cli.common import solver_progress_line
from moe2_cli.progress import ProgressEvent
from tests.conftest import ROOT

HEAVY = ("ortools", "sklearn", "scipy", "pandas", "matplotlib", "numpy")


def test_importing_the_cli_loads_no_heavy_package():
    code = f"import sys, moe2_cli.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""


def test_cpsat_loads_ortools_on_first_use():
    code = ("import sys; from moe2_cli.solvers import get_solver; before = 'ortools' in sys.modules; "
            "get_solver('cpsat'); print(before, 'ortools' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_solver_progress_line_shows_iterations_incumbent_and_bound():
    line = solver_progress_line(ProgressEvent("solve", 12, None, {"objective": 0.712, "bound": float("nan")}))
    assert line == "iterations 12, incumbent 71.20%, bound -"


# ---------------------------------------------------------------- the error boundary


@pytest.mark.parametrize("command", [["select"], ["gating", "check"], ["stats", "simulate"], ["stats", "rates"]])
def test_negative_seed_is_a_clean_usage_error(run_cli, command):
    result = run_cli(*command, "--seed", "-1")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("moe2: invalid value for '--seed'")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["select", "--sede", "1"], "moe2: no such option: --sede"),
    (["select", "a.yaml", "b.yaml"], "moe2: got unexpected extra argument"),
    (["select", "--top-k", "x"], "moe2: invalid value for '--top-k'"),
    (["select", "--budget", "energy"], "moe2: --budget must look like"),
    (["frontier", "--sweep", "energy=1"], "moe2: --sweep must look like"),
])
def test_every_error_is_one_line_in_one_style(run_cli, args, message):
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1
    assert not any(c in result.stderr for c in "╭│╰") and "Value error" not in result.stderr


def test_file_diagnostics_keep_their_place(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\n")
    result = run_cli("validate", bad)
    assert result.exit_code == 2
    assert all(line.startswith(str(bad)) for line in result.stderr.splitlines())


def test_debug_is_accepted_after_the_command(run_cli):
    before = run_cli("--debug", "select", "--budget", "energi=3")
    after = run_cli("select", "--budget", "energi=3", "--debug")
    assert before.exit_code == after.exit_code == 2
    assert "Traceback" in before.stderr and "Traceback" in after.stderr
    assert "Traceback" not in run_cli("select", "--budget", "energi=3").stderr


def test_shell_completion_is_offered(run_cli):
    assert "--install-completion" in run_cli("--help").stdout
    # Named, not detected from the parent process (which depends on how the tests were started).
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = subprocess.run([sys.executable, "-m", "moe2_cli", "--show-completion", "bash"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_MOE2_COMPLETE" in script.stdout


def test_ctrl_c_while_loading_exits_130_quietly():
    code = ("import sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'moe2_cli.cli':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "from moe2_cli.__main__ import main\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert result.stderr == ""


def test_numpy_runtime_warnings_stay_off_stderr(run_cli, monkeypatch):
    import numpy as np

    from moe2_cli import api

    solve = api.solve

    def warning_solve(*args, **kwargs):
        np.mean(np.array([]))  # "Mean of empty slice": a RuntimeWarning
        return solve(*args, **kwargs)

    monkeypatch.setattr(api, "solve", warning_solve)
    result = run_cli("select", ROOT / "tests" / "fixtures" / "good" / "scenario.yaml")
    assert result.exit_code == 0, result.output
    assert "RuntimeWarning" not in result.stderr and "Mean of empty slice" not in result.stderr


def test_plot_extra_is_shown_in_help(run_cli):
    assert "pip install 'moe2[plot]'" in " ".join(run_cli("frontier", "--help").stdout.split())
