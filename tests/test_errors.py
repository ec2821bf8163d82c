"""Errors outside the command line speak of parameters, never of flags; the CLI names its flags."""

from __future__ import annotations

import ast

import pytest

from moe2_cli.errors import UsageError
from tests.conftest import ROOT

PACKAGE = ROOT / "moe2_cli"


def _message_strings(node: ast.AST) -> list[str]:
    """Every string constant in a raised expression: plain strings and the literal parts of f-strings."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _flag_named_raises() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}"
                          for text in _message_strings(node.exc) if "--" in text]
    return found


def test_no_error_raised_outside_the_command_line_names_a_flag():
    assert _flag_named_raises() == []


def test_the_scan_sees_f_string_parts(tmp_path):
    tree = ast.parse('raise UsageError(f"--top-k must be {k}")')
    raised = next(n for n in ast.walk(tree) if isinstance(n, ast.Raise))
    assert any("--" in text for text in _message_strings(raised.exc))


def test_a_usage_error_is_a_value_error_naming_its_parameter():
    err = UsageError("must be >= 1 (got 0)", "folds")
    assert isinstance(err, ValueError) and str(err) == "folds must be >= 1 (got 0)"
    assert (err.subject, err.message) == ("folds", "must be >= 1 (got 0)")


@pytest.mark.parametrize("args, line", [
    (["select", "--top-k", "99"], "moe2: --top-k must be between 1 and 11, the scenario's number of experts "
                                  "(got 99)\n"),
    (["select", "--budget", "energy=-3"], "moe2: --budget energy must be a positive number (got '-3')\n"),
    (["frontier", "--sweep", "energy=1:2"], "moe2: --sweep must look like energy=50:400:10 (got 'energy=1:2')\n"),
    (["frontier"], "moe2: give one of --sweep energy=LO:HI:STEP (optionally with a latency sweep), --exact or "
                   "--exact-3d\n"),
])
def test_the_command_line_says_its_own_flag(run_cli, args, line):
    result = run_cli(*args)
    assert result.exit_code == 2 and result.stderr == line
