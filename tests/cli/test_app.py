"""The command line starts light: heavy packages load only when a command needs them."""

from __future__ import annotations

import subprocess
import sys

from moe2_cli.cli.common import solver_progress_line
from moe2_cli.progress import ProgressEvent

HEAVY = ("ortools", "sklearn", "scipy", "pandas", "matplotlib")


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
