"""The gate beside the simple routers, on the same queries, with paired intervals.

Cross-validated: every router is fitted on the training folds of the cross-fit and scores the
held-out fold, exactly as the gate was, so all F values are out of sample and comparable query
by query. On another outcome file (:func:`score_on`), every router is fitted on all of the
scenario's queries, as deployed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.category import category_inference
from moe2_cli.gating.confidence import Bootstrap, Interval, query_values
from moe2_cli.gating.crossfit import DEFAULT_FOLDS, CrossFit, gate_logits
from moe2_cli.gating.drift import mix_shift, plan_settings, prediction, reweighted_plan, verdict
from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.gating.mix import mix_of
from moe2_cli.gating.model import SavedGate
from moe2_cli.gating.pipeline import (
    DEFAULT_QUERIES,
    expert_columns,
    out_of_fold,
    read_with_task_map,
    scenario_outcomes,
    train_deployed,
)
from moe2_cli.gating.routers import (
    BestSingle,
    CategoryLookup,
    LabelLookup,
    LogisticRouter,
    Oracle,
    out_of_fold_logits,
    tag_labels,
)
from moe2_cli.jsontext import load_record
from moe2_cli.outcomes import Outcomes
from moe2_cli.problem import Instance, mask_of, members
from moe2_cli.progress import ProgressCallback


@dataclass(frozen=True)
class RouterScore:
    """F of one router on every LLM, and its difference from the gate, with intervals."""

    name: str
    objective: Interval
    versus_gate: Interval | None  # router minus gate; None for the gate itself


def routers(instance: Instance, labelled: bool = False, seed: int = 0) -> dict:
    """Name -> factory of every router and reference compared with the gate (the label lookup
    only for ``labelled`` tables)."""
    out: dict[str, Callable[[], Any]] = {"lookup": CategoryLookup}
    if labelled:
        out["label-lookup"] = LabelLookup
    out.update({"logreg": lambda: LogisticRouter(seed), "best-single": lambda: BestSingle(instance.shares),
                "oracle": Oracle})
    return out


def _scores(instance: Instance, table: Outcomes, logits: dict[str, np.ndarray], *, columns, resamples: int,
            confidence: float, seed: int, fold: np.ndarray | None = None) -> list[RouterScore]:
    weights = share_weights(table.category, instance.shares)
    values = {}
    for name, z in logits.items():
        objective = GatedObjective(instance, z, table.scores, weights, expert_columns=columns)
        values[name] = query_values(objective, [instance.full_mask])[0]
    # Only the share weights matter to the resamples, so any of the objectives will do.
    bootstrap = Bootstrap(objective, table.category, resamples=resamples, confidence=confidence, seed=seed,
                          fold=fold)
    return [RouterScore(name=name, objective=bootstrap.interval(v),
                        versus_gate=None if name == "gate" else bootstrap.interval(v - values["gate"]))
            for name, v in values.items()]


def cross_validated(instance: Instance, outcomes: Outcomes, fit: CrossFit, *, columns, labelled: bool = False,
                    resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> list[RouterScore]:
    """Every router's out-of-fold F on all LLMs beside the cross-fitted gate's."""
    logits = {"gate": fit.logits}
    for name, make in routers(instance, labelled, seed).items():
        logits[name] = out_of_fold_logits(make, outcomes, fit.fold, fit.folds)[fit.rows]
    # Every router was fitted once per fold, so its interval covers the fold-to-fold noise too.
    return _scores(instance, outcomes.subset(fit.rows), logits, columns=columns, resamples=resamples,
                   confidence=confidence, seed=seed, fold=fit.fold[fit.rows])


def score_on(instance: Instance, training: Outcomes, gate: SavedGate, other: Outcomes, *, columns,
             labelled: bool = False, resamples: int = 1000, confidence: float = 0.95,
             seed: int = 0) -> list[RouterScore]:
    """Every router fitted on all of ``training``, and the deployed ``gate``, scored on ``other``."""
    logits = {"gate": gate_logits(gate, other)}
    for name, make in routers(instance, labelled, seed).items():
        logits[name] = make().fit(training).logits(other)
    return _scores(instance, other, logits, columns=columns, resamples=resamples, confidence=confidence, seed=seed)


def has_labels(outcomes: Outcomes) -> bool:
    """Whether the table carries tags for the label lookup."""
    return any(label is not None for label in tag_labels(outcomes))


def score_record(scores: list[RouterScore]) -> list[dict]:
    """Rows of a comparison: each router's F and its difference from the gate, with intervals."""
    rows = []
    for score in scores:
        f, versus = score.objective, score.versus_gate
        rows.append({"router": score.name, "objective": f.estimate, "low": f.low, "high": f.high, "se": f.se,
                     "versus_gate": None if versus is None else versus.estimate,
                     "versus_gate_low": None if versus is None else versus.low,
                     "versus_gate_high": None if versus is None else versus.high})
    return rows


def compare_for_scenario(scenario, *, outcomes_path=None, top_k: int | None = None, seed: int = 0,
                         queries: int = DEFAULT_QUERIES, hidden: int = 0, folds: int = DEFAULT_FOLDS,
                         use_cache: bool = True, confidence: float = 0.95,
                         progress: ProgressCallback | None = None) -> dict:
    """The cross-validated comparison of ``moe2 gating train`` as a record: expected accuracy
    of the gate and of every router on all LLMs, out of fold, with paired intervals; and how
    well a request's category is inferred from its text (None for a table without text)."""
    instance = scenario.instance if top_k is None else scenario.instance.with_top_k(top_k)
    outcomes = scenario_outcomes(scenario, outcomes_path=outcomes_path, queries=queries, seed=seed,
                                 instance=instance)
    fit = out_of_fold(outcomes, instance.top_k, folds=folds, seed=seed, hidden=hidden, use_cache=use_cache,
                      progress=progress)
    scores = cross_validated(instance, outcomes, fit, columns=expert_columns(instance), labelled=has_labels(outcomes),
                             confidence=confidence, seed=seed)
    return {"scenario": instance.name, "top_k": instance.top_k, "llms": list(outcomes.columns),
            "experts": instance.n_experts, "queries": int(fit.rows.size), "folds": folds, "seed": seed,
            "confidence": confidence, "routers": score_record(scores),
            "category_inference": category_inference(outcomes, folds=folds, seed=seed, use_cache=use_cache)}


def _selection_mask(path: Path, instance: Instance) -> int:
    """The expert mask of a saved ``moe2 select --format json``."""
    record = load_record(path, "the selection")
    names = record.get("selection") if isinstance(record, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(Diagnostic(str(path), None, None, "not a moe2 select JSON record "
                                                           "(selection must be a list of expert ids)"))
    unknown = [n for n in names if n not in instance.expert_ids]
    if unknown or not names:
        raise InputError(Diagnostic(str(path), None, None, f"selection names no expert of {instance.name!r} "
                                    f"(got {unknown[0] if unknown else 'an empty selection'!r})"))
    return mask_of(instance.expert_ids.index(n) for n in names)


def _check_llms(other: Outcomes, instance: Instance) -> None:
    """Every LLM column of the file must be an LLM of the scenario (the reverse is checked when
    the table is fitted to the instance)."""
    llms = set(instance.expert_llms)
    extra = [c for c in other.columns if c not in llms]
    if extra:
        raise InputError([Diagnostic(other.source, None, None, f"LLM {c!r} is not an expert of {instance.name!r} "
                                     f"(it has: {', '.join(dict.fromkeys(instance.expert_llms))})") for c in extra])


def evaluate_on(scenario, path: Path, *, selection: Path | None = None, top_k: int | None = None, seed: int = 0,
                use_cache: bool = True, confidence: float = 0.95) -> dict:
    """Routers fitted on all of the scenario's outcomes and the deployed gate, scored on the
    outcome file ``path``, and the mix shift from the training outcomes to it; with
    ``selection``, that selection and its best single expert too, the plan's F reweighted to
    the new mix and where the selection's new F falls against it (see :mod:`.drift`)."""
    instance = scenario.instance if top_k is None else scenario.instance.with_top_k(top_k)
    training = scenario_outcomes(scenario, seed=seed, instance=instance)
    other = read_with_task_map(scenario, path)
    _check_llms(other, instance)
    other = other.for_instance(instance, per="llm")
    gate = train_deployed(training, instance.top_k, seed=seed, use_cache=use_cache)
    columns = expert_columns(instance)
    scores = score_on(instance, training, gate, other, columns=columns, labelled=has_labels(training),
                      confidence=confidence, seed=seed)
    record = {"scenario": instance.name, "outcomes": str(path), "queries": other.n_queries,
              "trained_on": training.n_queries, "confidence": confidence, "seed": seed,
              "routers": score_record(scores), "mix_shift": mix_shift(instance, training, other), "selection": None}
    if selection is not None:
        mask = _selection_mask(selection, instance)
        objective = GatedObjective(instance, gate_logits(gate, other), other.scores,
                                   share_weights(other.category, instance.shares), expert_columns=columns)
        bootstrap = Bootstrap(objective, other.category, confidence=confidence, seed=seed)
        trained_means = (share_weights(training.category, instance.shares) @ training.scores)[columns]
        inside = members(mask)
        single = inside[int(np.argmax(trained_means[inside]))]
        record["selection"] = {
            "experts": [instance.expert_ids[i] for i in inside],
            "objective": bootstrap.of(mask).as_dict(),
            "best_single": {"expert": instance.expert_ids[single], **bootstrap.of(1 << single).as_dict()},
            "gain_over_best_single": bootstrap.difference(mask, 1 << single).as_dict()}
        plan = reweighted_plan(scenario, instance, mask, mix_of(other, instance, str(path)), plan_settings(selection),
                               confidence=confidence, use_cache=use_cache)
        new = record["selection"]["objective"]
        plan["prediction"] = prediction(plan["objective"], new["se"], confidence)
        record["selection"]["plan"] = plan
        record["selection"]["drift"] = verdict(new["estimate"], plan["prediction"])
    return record
