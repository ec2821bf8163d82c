"""From a scenario to F: load or synthesise outcomes, cross-fit the gate on the full expert
set (or split once, with one fold), and evaluate F on queries each gate did not see.

Everything random flows from one seed: the synthetic table uses ``seed`` itself, the split and
the folds streams derived from it, and the gate ``seed`` again, so the same seed gives the same
F bits. Trained gates and cross-fitted logits are cached by content (:mod:`.cache`); a hit
gives the same bits as training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from moe2_cli.errors import Diagnostic, InputError, UsageError
from moe2_cli.gating.cache import GateCache, entry_key
from moe2_cli.gating.category import CategoryClassifier, deployed_classifier
from moe2_cli.gating.crossfit import DEFAULT_FOLDS, CrossFit, cross_fit, gate_logits
from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.gating.features import FeatureSpec, QueryFeaturizer
from moe2_cli.gating.gate_router import gate_settings, train_deployed
from moe2_cli.gating.mix import Mix, Weighting, by_category, weighting
from moe2_cli.gating.model import SavedGate, TopKGate
from moe2_cli.gating.registry import DEFAULT_ROUTER, ROUTERS, make_router
from moe2_cli.gating.router import Router
from moe2_cli.gating.routers import out_of_fold_logits
from moe2_cli.outcomes import (
    LLMROUTER_TASK_MAP,
    Outcomes,
    read_outcomes,
    synthesize_for,
)
from moe2_cli.problem import WORD_EXPERTS, Instance
from moe2_cli.progress import ProgressCallback
from moe2_cli.rng import stream

# Sized so the default scenario builds F in a fraction of a second: 1,000 held-out queries.
DEFAULT_QUERIES = 3000
SPLIT_FRACTIONS = (0.5, 1 / 6, 1 / 3)  # train, validation, held out


@dataclass(frozen=True)
class Split:
    """Query indices of each part; no question text is in two parts."""

    train: np.ndarray
    validation: np.ndarray
    held_out: np.ndarray


@dataclass(frozen=True, eq=False)
class GateSystem:
    """A trained two-level system and what it was built from."""

    instance: Instance
    outcomes: Outcomes  # one column per distinct LLM of the instance
    split: Split
    saved: SavedGate
    objective: GatedObjective


def expert_columns(instance: Instance) -> np.ndarray:
    """Each expert's column among the instance's distinct LLMs (first-seen order)."""
    llms = list(dict.fromkeys(instance.expert_llms))
    return np.array([llms.index(name) for name in instance.expert_llms], dtype=np.int64)


def scenario_outcomes(scenario, *, outcomes_path: str | Path | None = None, queries: int = DEFAULT_QUERIES,
                      seed: int = 0, instance: Instance | None = None) -> Outcomes:
    """The scenario's outcomes with one column per distinct LLM of the instance: an explicit
    file, else the scenario's ``outcomes:`` entry, else synthesised from the profile accuracies."""
    instance = instance or scenario.instance
    if (distinct := len(set(instance.expert_llms))) > WORD_EXPERTS:
        raise UsageError(f"the gate scores at most {WORD_EXPERTS} distinct LLMs, one column each "
                         f"(the scenario has {distinct}); copies of an LLM on more servers are not limited")
    spec = getattr(scenario, "outcomes", None)
    if outcomes_path is not None:
        table = read_with_task_map(scenario, outcomes_path)
    elif spec is not None:
        task_map = spec.task_map or (LLMROUTER_TASK_MAP if spec.format == "llmrouter" else None)
        table = read_outcomes(spec.path, spec.format, task_map)
    else:
        table = synthesize_for(instance, queries, seed)
    return table.for_instance(instance, per="llm")


def read_with_task_map(scenario, path: str | Path) -> Outcomes:
    """An outcome file in any supported format, its tasks mapped by the scenario's task map."""
    spec = getattr(scenario, "outcomes", None)
    return read_outcomes(path, task_map=spec.task_map if spec else None)


def split_queries(outcomes: Outcomes, seed: int, fractions=SPLIT_FRACTIONS) -> Split:
    """Shuffle the distinct question texts (query ids without text) and cut them by
    ``fractions``; every query follows its text."""
    keys = outcomes.group_keys()
    distinct = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    if len(distinct) < 3:
        raise InputError(Diagnostic(outcomes.source, None, None,
                                    f"need at least 3 distinct questions to split (got {len(distinct)})"))
    group = np.array([distinct[k] for k in keys])
    order = stream(seed, "split").permutation(len(distinct))
    cuts = np.rint(np.cumsum(fractions)[:-1] * len(distinct)).astype(int)
    # Every part gets at least one question: training 1..n-2, validation and held-out after it.
    cuts[0] = np.clip(cuts[0], 1, len(distinct) - 2)
    cuts[1] = np.clip(cuts[1], cuts[0] + 1, len(distinct) - 1)
    part_of_group = np.empty(len(distinct), dtype=np.int64)
    part_of_group[order] = np.searchsorted(cuts, np.arange(len(distinct)), side="right")
    part = part_of_group[group]
    return Split(*(np.flatnonzero(part == i) for i in range(3)))


def fit_gate(outcomes: Outcomes, split: Split, k: int, *, seed: int = 0, hidden: int = 0,
             columns=None, progress: ProgressCallback | None = None, **gate_options) -> SavedGate:
    """Train the gate on the split's train part (early stopping on its validation part), over
    all columns (LLMs) or only ``columns`` (indices, for a gate retrained on a subset)."""
    columns = np.arange(len(outcomes.columns)) if columns is None else np.asarray(columns)
    train, validation = outcomes.subset(split.train), outcomes.subset(split.validation)
    featurizer = QueryFeaturizer(FeatureSpec.for_outcomes(outcomes)).fit(train)
    gate = TopKGate(k=k, hidden=hidden, seed=seed, **gate_options).fit(
        featurizer.transform(train), train.scores[:, columns],
        featurizer.transform(validation), validation.scores[:, columns], observed=train.observed_at(columns),
        observed_val=validation.observed_at(columns), progress=progress)
    return SavedGate(gate=gate, featurizer=featurizer, columns=tuple(outcomes.columns[i] for i in columns))


def out_of_fold(outcomes: Outcomes, k: int, *, folds: int = DEFAULT_FOLDS, seed: int = 0, hidden: int = 0,
                sharpen: bool = True, use_cache: bool = True, progress: ProgressCallback | None = None) -> CrossFit:
    """Gate scores of queries by gates that did not see them: K cross-fitted gates, or with
    ``folds=1`` the plain split's gate on its held-out third. Cached by content."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1 (got {folds})")
    cache = GateCache(use_cache)
    key = entry_key("crossfit", outcomes, {**gate_settings(outcomes, k, seed=seed, hidden=hidden, sharpen=sharpen),
                                           "folds": folds})
    hit = cache.load_arrays(key)
    if hit is not None:
        return CrossFit(rows=hit["rows"], logits=hit["logits"], fold=hit["fold"], folds=folds)
    if folds == 1:
        split = split_queries(outcomes, seed)
        saved = fit_gate(outcomes, split, k, seed=seed, hidden=hidden, sharpen=sharpen)
        fold = np.full(outcomes.n_queries, -1, dtype=np.int64)
        fold[split.held_out] = 0
        fit = CrossFit(rows=split.held_out, logits=gate_logits(saved, outcomes.subset(split.held_out)), fold=fold,
                       folds=1)
    else:
        fit, _ = cross_fit(outcomes, folds, k, seed=seed, hidden=hidden, sharpen=sharpen, progress=progress)
    cache.store_arrays(key, {"rows": fit.rows, "logits": fit.logits, "fold": fit.fold})
    return fit


def deployed_gate(scenario, *, top_k: int | None = None, seed: int = 0, outcomes_path: str | Path | None = None,
                  use_cache: bool = True) -> SavedGate:
    """The scenario's deployed gate (what ``route`` and ``serve`` apply): trained on all of the
    scenario's outcomes, for its experts, from the cache when it holds one."""
    instance = scenario.instance if top_k is None else scenario.instance.with_top_k(top_k)
    outcomes = scenario_outcomes(scenario, outcomes_path=outcomes_path, seed=seed, instance=instance)
    saved = train_deployed(outcomes, instance.top_k, seed=seed, use_cache=use_cache)
    return replace(saved, experts=instance.expert_ids, expert_columns=tuple(expert_columns(instance).tolist()))


def deployed_router(scenario, router: str = DEFAULT_ROUTER, *, top_k: int | None = None, seed: int = 0,
                    outcomes_path: str | Path | None = None, categories: bool | None = False,
                    use_cache: bool = True) -> tuple[Router, CategoryClassifier | None]:
    """The router ``route`` and ``serve`` run: ``router`` fitted on every query of the scenario's
    outcomes (one column per LLM), from the cache when it holds it; with ``categories``, also the
    classifier that infers a query's category from its text (fitted and cached alike). With
    ``categories=None`` the classifier is fitted where the outcomes have text, and is None where
    they have none; with ``True``, outcomes without text are a UsageError."""
    instance = scenario.instance if top_k is None else scenario.instance.with_top_k(top_k)
    outcomes = scenario_outcomes(scenario, outcomes_path=outcomes_path, seed=seed, instance=instance)
    # The classifier first: outcomes without text are refused before a router is trained.
    if categories and outcomes.texts is None:
        raise UsageError(f"infer needs question text in the outcomes to learn categories from ({outcomes.source} "
                         f"has none): use require, or default:NAME", "category_policy")
    wanted = outcomes.texts is not None if categories is None else categories
    classifier = deployed_classifier(outcomes, seed, use_cache) if wanted else None
    return make_router(router, k=instance.top_k, seed=seed).fit_cached(outcomes, use_cache), classifier


def fitted_objective(instance: Instance, outcomes: Outcomes, fit: CrossFit, *, metric: str = "accuracy",
                     floor: float = 1e-3, weights: Weighting | None = None) -> GatedObjective:
    """F on the queries scored out of fold, weighted by the instance's category shares (or by
    ``weights`` of those queries, for a traffic mix); ``outcomes`` has one column per distinct
    LLM of the instance, as :func:`scenario_outcomes` gives."""
    scored = outcomes.subset(fit.rows)
    weights = weights or by_category(scored, instance.shares)
    return GatedObjective(instance, fit.logits, scored.scores, share_weights(weights.strata, weights.shares),
                          expert_columns=expert_columns(instance), metric=metric, floor=floor)


def held_out_objective(instance: Instance, outcomes: Outcomes, split: Split, saved: SavedGate,
                       metric: str = "accuracy") -> GatedObjective:
    """F on the held-out queries of one split, for one trained gate."""
    held = outcomes.subset(split.held_out)
    fit = CrossFit(rows=split.held_out, logits=gate_logits(saved, held), fold=np.zeros(0), folds=1)
    return fitted_objective(instance, outcomes, fit, metric=metric, floor=saved.gate.floor)


def train_system(scenario, *, top_k: int | None = None, seed: int = 0, outcomes_path: str | Path | None = None,
                 metric: str = "accuracy", queries: int = DEFAULT_QUERIES, hidden: int = 0,
                 progress: ProgressCallback | None = None) -> GateSystem:
    """Outcomes, split, gate trained on every expert, and F on the held-out queries."""
    instance = scenario.instance if top_k is None else scenario.instance.with_top_k(top_k)
    outcomes = scenario_outcomes(scenario, outcomes_path=outcomes_path, queries=queries, seed=seed,
                                 instance=instance)
    split = split_queries(outcomes, seed)
    # Sharper weights raise expected accuracy but cost likelihood, so only for that metric.
    saved = fit_gate(outcomes, split, instance.top_k, seed=seed, hidden=hidden, sharpen=metric == "accuracy",
                     progress=progress)
    saved = replace(saved, experts=instance.expert_ids, expert_columns=tuple(expert_columns(instance).tolist()))
    objective = held_out_objective(instance, outcomes, split, saved, metric)
    return GateSystem(instance=instance, outcomes=outcomes, split=split, saved=saved, objective=objective)


@dataclass(frozen=True, eq=False)
class Estimate:
    """F(S) estimated out of fold, with what a bootstrap of it needs: the category, the
    stratum and share it is weighted by, and the cross-fitting fold of every scored query."""

    objective: GatedObjective
    category: np.ndarray
    folds: int
    fold: np.ndarray
    weighting: Weighting


def router_fit(outcomes: Outcomes, fit: CrossFit, router: str, k: int, seed: int) -> CrossFit:
    """The same folds scored by the router registered as ``router`` instead of the gate."""
    logits = out_of_fold_logits(lambda: make_router(router, k=k, seed=seed), outcomes, fit.fold,
                                max(fit.folds, 1))[fit.rows]
    return replace(fit, logits=logits)


def estimate_objective(scenario, *, top_k: int | None = None, seed: int = 0,
                       outcomes_path: str | Path | None = None, metric: str = "accuracy",
                       queries: int = DEFAULT_QUERIES, folds: int = DEFAULT_FOLDS, use_cache: bool = True,
                       router: str = "gate", mix: Mix | None = None,
                       progress: ProgressCallback | None = None) -> Estimate:
    """F(S) for a scenario, cross-fitted over ``folds`` folds (one: a plain split), of the gate
    or of another router restricted to S (``router``, a name of :data:`~.registry.ROUTERS`),
    reweighted to ``mix`` when given."""
    if router not in ROUTERS:
        raise UsageError(f"must be one of {', '.join(ROUTERS)} (got {router!r})", "router")
    instance = scenario.instance if top_k is None else scenario.instance.with_top_k(top_k)
    outcomes = scenario_outcomes(scenario, outcomes_path=outcomes_path, queries=queries, seed=seed,
                                 instance=instance)
    # Sharper weights raise expected accuracy but cost likelihood, so only for that metric.
    fit = out_of_fold(outcomes, instance.top_k, folds=folds, seed=seed, sharpen=metric == "accuracy",
                      use_cache=use_cache, progress=progress)
    if router != "gate":
        fit = router_fit(outcomes, fit, router, instance.top_k, seed)
    weights = weighting(mix, outcomes.subset(fit.rows), instance.shares)
    return Estimate(objective=fitted_objective(instance, outcomes, fit, metric=metric, weights=weights),
                    category=outcomes.category[fit.rows], folds=folds, fold=fit.fold[fit.rows], weighting=weights)


def build_objective(scenario, **options) -> GatedObjective:
    """F(S) for a scenario: see :func:`estimate_objective`."""
    return estimate_objective(scenario, **options).objective


# ---------------------------------------------------------------- the optimality-preserving check


def random_subsets(system: GateSystem, count: int, rng: np.random.Generator) -> list[int]:
    """Up to ``count`` random expert masks whose LLM sets are distinct, with at least two LLMs
    and not all of them (one LLM, or all, cannot differ from the full-set gate)."""
    objective = system.objective
    n, m = system.instance.n_experts, objective.n_columns
    seen, out = set(), []
    for mask in rng.integers(1, 1 << n, size=64 * count + 64, dtype=np.int64).tolist():
        columns = int(objective.column_masks(np.array([mask]))[0])
        if 2 <= columns.bit_count() < m and columns not in seen:
            seen.add(columns)
            out.append(mask)
            if len(out) == count:
                break
    return out
