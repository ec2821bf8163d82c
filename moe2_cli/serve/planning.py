"""How ``serve`` builds its plan from its settings: the same steps at start and on every reload,
so a reloaded plan is the one a restart would give.

First the scenario and S (the selection file, or S solved from the budgets), with the category
policy and the targets of S's experts; then the router fitted (and the category classifier, for
a policy that infers). Start-up runs the steps apart, so that a typo in a flag, the log or the
port is reported before the router is fitted; a reload runs them in one go, off the event loop.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from moe2_cli.serve.categories import CategoryPolicy, parse_policy
from moe2_cli.serve.plan import Choice, Plan, choose, with_router
from moe2_cli.serve.upstream import Target, targets_for


class Chosen(NamedTuple):
    choice: Choice
    policy: CategoryPolicy  # what a request naming no category gets, as asked (or infer)
    targets: dict[str, Target]  # where S's experts answer


class Built(NamedTuple):
    plan: Plan
    targets: dict[str, Target]


@dataclass(frozen=True)
class PlanRecipe:
    """The settings a plan is built from: the command line's, read again on every build (the
    scenario and the selection file included)."""

    scenario: Path | None
    budget_specs: tuple[str, ...] = ()
    selection: Path | None = None
    seed: int = 0
    outcomes: Path | None = None
    router: str | None = None
    category_policy: str | None = None  # as given; None: infer where the outcomes carry text
    timeout_s: float | None = None  # stands in for each endpoint's timeout_s

    def choose(self) -> Chosen:
        choice = choose(self.scenario, budget_specs=list(self.budget_specs) or None,
                        selection=self.selection, seed=self.seed, outcomes=self.outcomes, router=self.router)
        policy = parse_policy(self.category_policy or "infer", choice.scenario.instance.categories)
        return Chosen(choice, policy, targets_for(choice.scenario, choice.selection, self.timeout_s))

    def fit(self, chosen: Chosen) -> Plan:
        """The chosen plan with its router; a policy not asked for by name may turn to
        ``require`` (outcomes without text), one asked for may not."""
        return with_router(chosen.choice, outcomes=self.outcomes, category_policy=chosen.policy,
                           strict=self.category_policy is not None)

    def build(self) -> Built:
        """Both steps, and the plan's routing warmed (its lazy imports loaded) before it serves."""
        chosen = self.choose()
        plan = self.fit(chosen)
        plan.warm()
        return Built(plan, chosen.targets)


def plan_hash(plan: Plan) -> str:
    """A short digest of what a plan serves: the scenario, S, k, the router and its seed."""
    served = {"scenario": plan.scenario.name, "selection": plan.selection, "top_k": plan.k,
              "router": plan.router_name, "seed": plan.seed}
    return hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest()[:12]
