"""Level-1 expert selection: every solver behind one interface, and a registry by name.

``SOLVERS`` maps a name to a factory taking keyword options (every factory accepts ``seed``);
:func:`get_solver` builds one by name.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable

from moe2_cli.errors import UsageError
from moe2_cli.solvers.base import Limits, Solver, SolveResult, Status
from moe2_cli.solvers.baselines import (
    AllFeasibleSolver,
    BestSingleSolver,
    GreedySolver,
    RandomSolver,
)
from moe2_cli.solvers.brb import BrbSolver
from moe2_cli.solvers.cpsat import CpSatSolver
from moe2_cli.solvers.exhaustive import ExhaustiveSolver
from moe2_cli.solvers.polyblock import PolyblockSolver

DEFAULT_SOLVER = "polyblock"

SOLVERS: dict[str, Callable[..., Solver]] = {
    "polyblock": PolyblockSolver,
    "brb": BrbSolver,
    "exhaustive": ExhaustiveSolver,
    "exhaustive-all": functools.partial(ExhaustiveSolver, all_feasible=True),
    "cpsat": functools.partial(CpSatSolver, mode="exact"),
    "cpsat-surrogate": functools.partial(CpSatSolver, mode="surrogate"),
    "greedy": GreedySolver,
    "best-single": BestSingleSolver,
    "random": RandomSolver,
    "all-feasible": AllFeasibleSolver,
}


def get_solver(name: str, **options) -> Solver:
    """The solver registered as ``name``, built with ``options``; UsageError if unknown."""
    if name not in SOLVERS:
        close = difflib.get_close_matches(name, list(SOLVERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; choose one of {', '.join(SOLVERS)}"
        raise UsageError(f"unknown solver {name!r}{hint}")
    factory = SOLVERS[name]
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(f"solver {name!r} does not take option(s) {', '.join(unknown)}")
    return factory(**options)


__all__ = [
    "DEFAULT_SOLVER", "SOLVERS", "get_solver", "Limits", "SolveResult", "Solver", "Status",
    "PolyblockSolver", "BrbSolver", "ExhaustiveSolver", "CpSatSolver", "GreedySolver",
    "BestSingleSolver", "RandomSolver", "AllFeasibleSolver",
]
