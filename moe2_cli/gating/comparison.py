"""The gate beside the simple routers, on the same queries, with paired intervals.

Cross-validated: every router is fitted on the training folds of the cross-fit and scores the
held-out fold, exactly as the gate was, so all F values are out of sample and comparable query
by query. On another outcome file (:func:`score_on`), every router is fitted on all of the
scenario's queries, as deployed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.gating.confidence import Bootstrap, Interval, query_values
from moe2_cli.gating.crossfit import CrossFit, gate_logits
from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.gating.model import SavedGate
from moe2_cli.gating.routers import (
    BestSingle,
    CategoryLookup,
    LabelLookup,
    LogisticRouter,
    Oracle,
    out_of_fold_logits,
    router_logits,
)
from moe2_cli.outcomes import Outcomes
from moe2_cli.problem import Instance


@dataclass(frozen=True)
class RouterScore:
    """F of one router on every LLM, and its difference from the gate, with intervals."""

    name: str
    objective: Interval
    versus_gate: Interval | None  # router minus gate; None for the gate itself


def routers(instance: Instance, labels=None, seed: int = 0) -> dict:
    """Name -> factory of every router and reference compared with the gate."""
    out = {"lookup": CategoryLookup}
    if labels is not None:
        out["label-lookup"] = lambda: LabelLookup(labels)
    out.update({"logreg": lambda: LogisticRouter(seed), "best-single": lambda: BestSingle(instance.shares),
                "oracle": Oracle})
    return out


def _scores(instance: Instance, table: Outcomes, logits: dict[str, np.ndarray], *, columns, resamples: int,
            confidence: float, seed: int) -> list[RouterScore]:
    weights = share_weights(table.category, instance.shares)
    values = {}
    bootstrap = None
    for name, z in logits.items():
        objective = GatedObjective(instance, z, table.scores, weights, expert_columns=columns)
        bootstrap = bootstrap or Bootstrap(objective, table.category, resamples=resamples, confidence=confidence,
                                           seed=seed)
        values[name] = query_values(objective, [instance.full_mask])[0]
    return [RouterScore(name=name, objective=bootstrap.interval(v),
                        versus_gate=None if name == "gate" else bootstrap.interval(v - values["gate"]))
            for name, v in values.items()]


def cross_validated(instance: Instance, outcomes: Outcomes, fit: CrossFit, *, columns, labels=None,
                    resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> list[RouterScore]:
    """Every router's out-of-fold F on all LLMs beside the cross-fitted gate's."""
    logits = {"gate": fit.logits}
    for name, make in routers(instance, labels, seed).items():
        logits[name] = out_of_fold_logits(make, outcomes, fit.fold, fit.folds)[fit.rows]
    return _scores(instance, outcomes.subset(fit.rows), logits, columns=columns, resamples=resamples,
                   confidence=confidence, seed=seed)


def score_on(instance: Instance, training: Outcomes, gate: SavedGate, other: Outcomes, *, columns, labels=None,
             resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> list[RouterScore]:
    """Every router fitted on all of ``training``, and the deployed ``gate``, scored on ``other``."""
    logits = {"gate": gate_logits(gate, other)}
    for name, make in routers(instance, labels, seed).items():
        logits[name] = router_logits(make().fit(training), other)
    return _scores(instance, other, logits, columns=columns, resamples=resamples, confidence=confidence, seed=seed)
