"""Savings against a named baseline (``moe2 serve --baseline``): what each answered request cost
by the profiles, against what the baseline expert alone would have cost for its category.

The baseline is ``best-single``, the single expert a user would otherwise run (the best one that
fits the budgets alone, as ``moe2 select`` names it), or an expert named by its id. Both sides
are profile estimates: the route's energy is the sum of the experts called (the log's
``estimated_j``) and its latency the scenario's latency model over them (servers in parallel,
the experts on one server one after another, then aggregation); the baseline's are the same
model for the expert alone. A request that got no answer saves nothing: its baseline is logged,
its savings are null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moe2_cli.errors import InfeasibleError, UsageError
from moe2_cli.problem import Instance
from moe2_cli.serve.metrics import Metrics
from moe2_cli.serve.plan import Choice

BEST_SINGLE = "best-single"


@dataclass(frozen=True)
class Baseline:
    """The baseline expert and its profile cost per category (the scenario's category order)."""

    expert: str
    energy_j: tuple[float, ...]
    latency_s: tuple[float, ...]


def baseline_of(instance: Instance, expert: str) -> Baseline:
    """``expert``'s cost alone, per category, by the scenario's resource model."""
    i = instance.expert_ids.index(expert)
    return Baseline(expert, tuple(instance.energy_j[i].tolist()), model_latency(instance, [i]))


def model_latency(instance: Instance, experts: list[int]) -> tuple[float, ...]:
    """Per category, the latency of ``experts`` all running: servers in parallel, one server's
    experts one after another, then aggregation. The planner's worst case with k = all of them, in
    the profiles' own seconds (the planner rounds up to whole units), as ``estimated_j`` is in
    their own joules."""
    chosen = np.asarray(experts)
    servers = instance.expert_server[chosen]
    work = [instance.transmission_s[s] + instance.latency_s[chosen[servers == s]].sum(axis=0)
            for s in np.unique(servers)]
    return tuple((np.max(work, axis=0) + instance.aggregation_s).tolist())


def resolve_baseline(spec: str, choice: Choice, *, selection: Path | None = None,
                     budget_specs: list[str] | None = None, outcomes: Path | None = None) -> Baseline:
    """The baseline ``spec`` names: ``best-single``, or an expert id of the scenario (a
    UsageError naming the choices otherwise)."""
    instance = choice.scenario.instance
    if spec == BEST_SINGLE:
        return baseline_of(instance, best_single_expert(choice, selection, budget_specs, outcomes))
    if spec not in instance.expert_ids:
        raise UsageError(f"must be {BEST_SINGLE} or an expert of {choice.scenario.name!r}: "
                         f"{', '.join(instance.expert_ids)} (got {spec!r})", "baseline")
    return baseline_of(instance, spec)


def best_single_expert(choice: Choice, selection: Path | None, budget_specs: list[str] | None,
                       outcomes: Path | None) -> str:
    """The best single expert that fits: the one the selection file names as such (it was planned
    under that file's budgets), else the one ``moe2 select`` would name under these budgets."""
    named = _named_in(selection)
    if named in choice.scenario.instance.expert_ids:
        return named
    from moe2_cli import api  # the planner (numpy, the gates) loads only when it must decide
    from moe2_cli.rules import best_single

    session = api.session_for(choice.scenario.path, budget_specs, seed=choice.seed, outcomes=outcomes,
                              router=choice.router_name, top_k=choice.k)
    single = best_single(session.problem)
    if single is None:
        raise InfeasibleError("no single expert fits the budgets, so there is no best-single baseline: "
                              "name an expert as the baseline instead")
    return choice.scenario.instance.expert_ids[single.bit_length() - 1]


def _named_in(selection: Path | None) -> str | None:
    """The expert a select record names as the best single one that fits (None without one);
    the file was read and checked when its selection was taken."""
    if selection is None:
        return None
    record = json.loads(Path(selection).read_text(encoding="utf-8"))
    gain = record.get("gain_over_best_single")
    return gain.get("expert") if isinstance(gain, dict) else None


@dataclass
class Savings:
    """Counts each request against the baseline; the routes' latencies are cached by the set of
    experts called (a handful of sets in practice)."""

    instance: Instance
    baseline: Baseline
    _latency: dict[tuple[int, ...], tuple[float, ...]] = field(default_factory=dict, init=False)

    def account(self, metrics: Metrics, c: int, called: list[int], status: int, energy_j: float) -> dict:
        """The log fields of one request of category index ``c`` that called the experts
        ``called`` (indices) at an estimated ``energy_j``; answered ones are counted in ``metrics``."""
        base = self.baseline
        record: dict = {"baseline": {"expert": base.expert, "energy_j": round(base.energy_j[c], 6),
                                     "latency_s": round(base.latency_s[c], 6)},
                        "estimated_latency_s": None, "saved_j": None, "saved_s": None}
        route_s = self._route_latency(called)[c] if called else None
        if route_s is not None:
            record["estimated_latency_s"] = round(route_s, 6)
        if status != 200 or route_s is None:
            return record
        record["saved_j"] = round(base.energy_j[c] - energy_j, 6)
        record["saved_s"] = round(base.latency_s[c] - route_s, 6)
        labels = (("category", self.instance.categories[c]), ("baseline", base.expert))
        # The logged (rounded) figures, so that the log's sums are the metrics' totals.
        metrics.baseline_energy.inc(labels, record["baseline"]["energy_j"])
        metrics.baseline_latency.inc(labels, record["baseline"]["latency_s"])
        metrics.saved_energy.inc(labels, record["saved_j"])
        metrics.saved_latency.inc(labels, record["saved_s"])
        return record

    def _route_latency(self, called: list[int]) -> tuple[float, ...]:
        key = tuple(sorted(set(called)))
        if key not in self._latency:
            self._latency[key] = model_latency(self.instance, list(key))
        return self._latency[key]
