"""What a solve means to a reader: the stable JSON record and the reasons behind a selection.

Pure data: no printing. The select, compare and frontier commands all build their records here,
so table, csv and json show the same numbers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moe2_cli.mean_cost import mean_use
from moe2_cli.plain import jsonable
from moe2_cli.problem import Problem, bits_of, members
from moe2_cli.solvers.base import SolveResult, Status

SELECT_SCHEMA = "moe2.select/1"


@dataclass(frozen=True)
class SelectionRecord:
    """One selection as moe2 reports it: the solve behind it, and the object ``moe2 select
    --format json`` prints (each frontier point and compare row carries the same object, plus
    a few keys of its own). ``record["objective_ci"]`` reads one key; :meth:`to_dict` gives
    them all as plain JSON values."""

    result: SolveResult
    fields: dict[str, Any]

    @classmethod
    def of(cls, result: SolveResult, payload: Mapping[str, Any]) -> SelectionRecord:
        return cls(result, jsonable(dict(payload)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, a copy the caller may change."""
        return copy.deepcopy(self.fields)

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self.fields[key])

    @property
    def status(self) -> Status:
        return self.result.status

    @property
    def selection(self) -> tuple[str, ...]:
        return self.result.selection

    @property
    def mask(self) -> int:
        return self.result.mask

    @property
    def objective(self) -> float | None:
        """F of the selection (None without one), as in the JSON."""
        value: float | None = self.fields["objective"]
        return value


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def best_feasible_single(problem: Problem) -> float | None:
    """F of the best expert that meets the budgets on its own: what a selection must beat."""
    singles = bits_of(range(problem.instance.n_experts), problem.instance.n_experts)
    fits = problem.feasible(singles)
    return float(problem.objective(singles[fits]).max()) if fits.any() else None


def _known(values: Mapping[str, float], chosen: bool) -> dict[str, float | None]:
    """Per-key figures of a selection; without one they are unknown (null), never 0."""
    return {k: _finite(v) if chosen else None for k, v in values.items()}


def result_payload(result: SolveResult, problem: Problem, *, scenario: str, seed: int, metric: str,
                   timing: bool = True, notes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The documented, stable JSON for one solve (see README, 'JSON output'). Without a
    selection, the figures that describe one (references, use per category, slack) are null."""
    inst, budgets = problem.instance, problem.budgets
    chosen = result.feasible
    return {
        "schema": SELECT_SCHEMA,
        "scenario": scenario,
        "solver": result.solver,
        "status": result.status.value,
        "metric": metric,
        "objective": _finite(result.objective),
        "bound": _finite(result.bound),
        "gap": _finite(result.gap),
        "references": {**_known(result.references, chosen), "best_single_feasible": best_feasible_single(problem)},
        "selection": list(result.selection),
        "mask": int(result.mask),
        "energy_j": _known(result.energy_j, chosen),
        "latency_s": _known(result.latency_s, chosen),
        "budgets": budgets.as_dict(),
        "binding": list(result.binding),
        "slack": _known(result.slack, chosen),
        "top_k": inst.top_k,
        "seed": seed,
        "units": {"energy": "mJ", "latency": "us"},
        "evaluations": result.evaluations,
        "iterations": result.iterations,
        "peak_vertices": result.peak_vertices,
        "monotonicity_violations": result.monotonicity_violations,
        "wall_s": round(result.wall_s, 6) if timing else None,
        "notes": list(notes) + list(result.notes),
    }


def unmet_reason(result: SolveResult, problem: Problem) -> str:
    """Why a solve ended without a selection, in words for the one line on stderr."""
    if best_feasible_single(problem) is None:
        return "no selection meets the budgets: no single expert fits"
    if result.status is Status.LIMIT:
        return f"{result.solver} stopped at its limit before finding a selection"
    why = f" ({result.notes[0]})" if result.notes else ""
    return f"{result.solver} found no selection{why}, although single experts fit the budgets"


def _violated(problem: Problem, mask: int) -> list[str]:
    """Names of the constraints ``mask`` breaks, e.g. ``energy.math``."""
    energy_slack, latency_slack = problem.budgets.slack(problem.usage([mask]))
    cats = problem.instance.categories
    worst = [f"energy.{c}" for c, s in zip(cats, energy_slack[0]) if s < 0] + \
        [f"latency.{c}" for c, s in zip(cats, latency_slack[0]) if s < 0]
    return worst + _mean_violated(problem, mask)


def _mean_violated(problem: Problem, mask: int) -> list[str]:
    """Names of the mean budgets ``mask`` breaks, e.g. ``energy.mean.math``."""
    if not problem.has_mean or problem.routing is None:
        return []
    use = mean_use(problem.routing, problem.instance, [mask])
    energy_cap, latency_cap = problem.mean_caps()
    cats = problem.instance.categories
    return [f"energy.mean.{c}" for c, u, cap in zip(cats, use.energy[0], energy_cap) if u > cap] + \
        [f"latency.mean.{c}" for c, u, cap in zip(cats, use.latency[0], latency_cap) if u > cap]


def explain_experts(problem: Problem, mask: int) -> list[dict[str, Any]]:
    """For every expert: its ``id``, whether it is ``selected``, its F alone (``f_alone``), and
    ``why`` a rejected one stays out."""
    inst, objective = problem.instance, problem.objective
    chosen = set(members(mask))
    singles = objective([1 << i for i in range(inst.n_experts)])
    current = objective.value(mask) if chosen else math.nan
    rows = []
    for i, expert in enumerate(inst.expert_ids):
        row: dict[str, Any] = {"id": expert, "selected": i in chosen, "f_alone": float(singles[i])}
        if i in chosen:
            row["why"] = "selected"
        elif broken := _violated(problem, 1 << i):
            row["why"] = "cannot fit alone: " + ", ".join(broken)
        elif not chosen:
            row["why"] = "fits alone; no selection was found"
        elif broken := _violated(problem, mask | (1 << i)):
            row["why"] = "adding it breaks " + ", ".join(broken)
        else:
            gain = objective.value(mask | (1 << i)) - current
            if abs(gain) <= 1e-12:
                row["why"] = "fits, but adds nothing to F"
            else:
                row["why"] = f"fits, but lowers F by {-gain:.2g}" if gain < 0 else f"fits; F would gain {gain:+.4f}"
        rows.append(row)
    return rows


@dataclass(frozen=True)
class FrontierRecord(SelectionRecord):
    """A point of a frontier: the select object plus ``caps`` (the swept budget values) and ``pareto``."""

    @property
    def caps(self) -> dict[str, float]:
        caps: dict[str, float] = self["caps"]
        return caps

    @property
    def pareto(self) -> bool:
        return bool(self.fields["pareto"])
