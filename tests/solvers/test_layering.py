"""Level 1 sees only the objective contract: no solver module imports the gating package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import moe2_cli.solvers

SOLVER_MODULES = sorted(Path(moe2_cli.solvers.__file__).parent.glob("*.py"))


def _imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def test_the_scan_sees_every_solver_module():
    assert {"brb.py", "polyblock.py", "base.py"} <= {p.name for p in SOLVER_MODULES}
    assert "moe2_cli.objective" in _imported(SOLVER_MODULES[[p.name for p in SOLVER_MODULES].index("brb.py")])


@pytest.mark.parametrize("path", SOLVER_MODULES, ids=[p.name for p in SOLVER_MODULES])
def test_solvers_import_nothing_from_the_gating_package(path):
    gating = [name for name in _imported(path) if name == "moe2_cli.gating" or name.startswith("moe2_cli.gating.")]
    assert not gating, f"{path.name} imports {gating}"
