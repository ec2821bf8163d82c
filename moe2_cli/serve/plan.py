"""What ``route`` and ``serve`` run: the scenario, the deployed gate, the selection S and its k,
and the budgets each request is checked against.

S comes from a saved ``moe2 select --format json`` file, or is solved from the budgets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from moe2_cli import api
from moe2_cli.errors import Diagnostic, InfeasibleError, InputError
from moe2_cli.gating.model import SavedGate
from moe2_cli.gating.pipeline import deployed_gate
from moe2_cli.problem import Budgets, mask_of
from moe2_cli.scenario.budgets import apply_budget_specs
from moe2_cli.scenario.scenario import Scenario, load_scenario
from moe2_cli.solvers import DEFAULT_SOLVER

SELECT_SCHEMA = "moe2.select/1"


@dataclass(frozen=True, eq=False)
class Choice:
    """The selection S to run, its k, and the budgets requests are checked against."""

    scenario: Scenario
    mask: int
    k: int
    budgets: Budgets

    @property
    def selection(self) -> list[str]:
        return [e for i, e in enumerate(self.scenario.instance.expert_ids) if self.mask >> i & 1]


@dataclass(frozen=True, eq=False)
class Plan(Choice):
    """A choice with the gate that routes inside it."""

    gate: SavedGate


def deployment_gate(scenario: Scenario, *, top_k: int, seed: int = 0, outcomes_path: Path | None = None) -> SavedGate:
    """The gate that routes live queries: trained on every query of the scenario's outcomes, for
    all of its experts, and shared with ``select`` through the gate cache."""
    return deployed_gate(scenario, top_k=top_k, seed=seed, outcomes_path=outcomes_path)


def choose(scenario_path: Path | None, *, budget_specs: list[str] | None = None, selection: Path | None = None,
           seed: int = 0, outcomes: Path | None = None) -> Choice:
    """Load the scenario and take S from ``selection``, or solve the budgets for it."""
    scenario = load_scenario(scenario_path)
    budgets = apply_budget_specs(scenario.budgets, budget_specs)
    if selection is not None:
        mask, k = read_selection(selection, scenario)
    else:
        mask, k = solve_selection(scenario_path, budget_specs, seed=seed, outcomes=outcomes)
    return Choice(scenario=scenario, mask=mask, k=k, budgets=budgets)


def with_gate(choice: Choice, *, seed: int = 0, outcomes: Path | None = None) -> Plan:
    gate = deployment_gate(choice.scenario, top_k=choice.k, seed=seed, outcomes_path=outcomes)
    return Plan(scenario=choice.scenario, mask=choice.mask, k=choice.k, budgets=choice.budgets, gate=gate)


def make_plan(scenario_path: Path | None, *, budget_specs: list[str] | None = None, selection: Path | None = None,
              seed: int = 0, outcomes: Path | None = None) -> Plan:
    """:func:`choose`, then the gate."""
    choice = choose(scenario_path, budget_specs=budget_specs, selection=selection, seed=seed, outcomes=outcomes)
    return with_gate(choice, seed=seed, outcomes=outcomes)


def solve_selection(scenario_path: Path | None, budget_specs: list[str] | None, *, seed: int = 0,
                    outcomes: Path | None = None) -> tuple[int, int]:
    """S by the default solver under the budgets; exit 1 when nothing fits."""
    session = api.session_for(scenario_path, budget_specs, seed=seed, outcomes=outcomes,
                              solver=DEFAULT_SOLVER)
    result = api.solve(session)
    if not result.feasible:
        raise InfeasibleError("no selection meets the budgets (no single expert fits)")
    return int(result.mask), session.problem.instance.top_k


def read_selection(path: Path, scenario: Scenario) -> tuple[int, int]:
    """(mask, k) from a ``moe2 select --format json`` file written for this scenario."""
    shown = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(Diagnostic(shown, None, None, f"cannot read the selection: {err.strerror or err}")) from None
    except UnicodeDecodeError:
        raise InputError(Diagnostic(shown, None, None, "not UTF-8 text")) from None
    except json.JSONDecodeError as err:
        raise InputError(Diagnostic(shown, err.lineno, err.colno, f"invalid JSON: {err.msg}")) from None
    if not isinstance(data, dict) or data.get("schema") != SELECT_SCHEMA:
        raise InputError(Diagnostic(shown, None, None, f"not the JSON record of moe2 select "
                                                       f"(schema {SELECT_SCHEMA} expected)"))
    return _mask(data, scenario, shown), _top_k(data, scenario, shown)


def _mask(data: dict, scenario: Scenario, shown: str) -> int:
    experts = scenario.instance.expert_ids
    if data.get("scenario") != scenario.name:
        raise InputError(Diagnostic(shown, None, None, f"the selection is for scenario {data.get('scenario')!r}, "
                                                       f"not {scenario.name!r}"))
    chosen = data.get("selection")
    if not isinstance(chosen, list) or not chosen:
        if data.get("status") == "infeasible":
            raise InfeasibleError(f"the selection in {shown} is empty: nothing met its budgets")
        raise InputError(Diagnostic(shown, None, None, f"selection must be a non-empty list of experts "
                                                       f"(got {chosen!r})"))
    unknown = [e for e in chosen if e not in experts]
    if unknown:
        raise InputError(Diagnostic(shown, None, None, f"selection names {unknown[0]!r}, not an expert of "
                                                       f"{scenario.name!r}"))
    return mask_of(experts.index(e) for e in chosen)


def _top_k(data: dict, scenario: Scenario, shown: str) -> int:
    k = data.get("top_k", scenario.instance.top_k)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(Diagnostic(shown, None, None, f"top_k must be a positive integer (got {k!r})"))
    return k
