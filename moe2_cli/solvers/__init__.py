"""Level-1 expert selection: every solver behind one interface, and a registry by name.

``SOLVERS`` maps a name to a factory taking keyword options (every factory accepts ``seed``);
:func:`get_solver` builds one by name. A solver's module is imported when it is first built, so
OR-Tools loads only when a CP-SAT solver runs.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from moe2_cli.errors import UsageError
from moe2_cli.solvers.base import Limits, Solver, SolveResult, Status

# The fastest solver that proves optimality on the gated F itself (any N, monotone or not).
DEFAULT_SOLVER = "brb"
# Solvers whose optimality proof is built for monotone F: on the gated F they prove on its
# monotone envelope where that is cheap to tabulate (see moe2_cli.session). Elsewhere polyblock
# proves on the gated F itself with the box bound; cpsat and exhaustive prove nothing there.
NEEDS_MONOTONE = frozenset({"polyblock", "cpsat", "exhaustive"})

# Solver class -> the module that defines it.
_CLASSES = {
    "PolyblockSolver": "polyblock",
    "BrbSolver": "brb",
    "ExhaustiveSolver": "exhaustive",
    "CpSatSolver": "cpsat",
    "GreedySolver": "baselines",
    "BestSingleSolver": "baselines",
    "RandomSolver": "baselines",
    "AllFeasibleSolver": "baselines",
}


def _solver_class(name: str) -> type[Solver]:
    module = importlib.import_module(f"moe2_cli.solvers.{_CLASSES[name]}")
    cls: type[Solver] = getattr(module, name)
    return cls


class _LazyFactory:
    """A registry entry: builds ``class_name(**fixed, **options)``, importing its module on first use."""

    def __init__(self, class_name: str, **fixed: Any):
        self.class_name = class_name
        self.fixed = fixed

    def resolve(self) -> Callable[..., Solver]:
        cls = _solver_class(self.class_name)
        return functools.partial(cls, **self.fixed) if self.fixed else cls

    def __call__(self, **options: Any) -> Solver:
        return self.resolve()(**options)


SOLVERS: dict[str, _LazyFactory] = {
    "polyblock": _LazyFactory("PolyblockSolver"),
    "brb": _LazyFactory("BrbSolver"),
    "exhaustive": _LazyFactory("ExhaustiveSolver"),
    "exhaustive-all": _LazyFactory("ExhaustiveSolver", all_feasible=True),
    "cpsat": _LazyFactory("CpSatSolver", mode="exact"),
    "cpsat-surrogate": _LazyFactory("CpSatSolver", mode="surrogate"),
    "greedy": _LazyFactory("GreedySolver"),
    "best-single": _LazyFactory("BestSingleSolver"),
    "random": _LazyFactory("RandomSolver"),
    "all-feasible": _LazyFactory("AllFeasibleSolver"),
}


def get_solver(name: str, **options: Any) -> Solver:
    """The solver registered as ``name``, built with ``options``; UsageError if unknown."""
    if name not in SOLVERS:
        close = difflib.get_close_matches(name, list(SOLVERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; choose one of {', '.join(SOLVERS)}"
        raise UsageError(f"unknown solver {name!r}{hint}")
    factory = SOLVERS[name].resolve()
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(f"solver {name!r} does not take option(s) {', '.join(unknown)}")
    return factory(**options)


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return _solver_class(name)
    raise AttributeError(f"module 'moe2_cli.solvers' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SOLVER", "NEEDS_MONOTONE", "SOLVERS", "get_solver", "Limits", "SolveResult", "Solver", "Status",
    "PolyblockSolver", "BrbSolver", "ExhaustiveSolver", "CpSatSolver", "GreedySolver",
    "BestSingleSolver", "RandomSolver", "AllFeasibleSolver",
]
