"""From a scenario to F: load or synthesise outcomes, split by question, train the gate on the
full expert set, and evaluate F on the held-out queries.

Everything random flows from one seed: the synthetic table uses ``seed`` itself, the split a
stream derived from it, and the gate ``seed`` again, so the same seed gives the same F bits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.ensemble import GatedObjective, gate_value, share_weights
from moe2_cli.gating.features import FeatureSpec, QueryFeaturizer
from moe2_cli.gating.model import SavedGate, TopKGate
from moe2_cli.outcomes import (
    LLMROUTER_TASK_MAP,
    Outcomes,
    read_outcomes,
    synthesize_for,
)
from moe2_cli.problem import Instance
from moe2_cli.progress import ProgressCallback, step_counter
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
    spec = getattr(scenario, "outcomes", None)
    if outcomes_path is not None:
        table = read_outcomes(outcomes_path, task_map=spec.task_map if spec else None)
    elif spec is not None:
        task_map = spec.task_map or (LLMROUTER_TASK_MAP if spec.format == "llmrouter" else None)
        table = read_outcomes(spec.path, spec.format, task_map)
    else:
        table = synthesize_for(instance, queries, seed)
    return table.for_instance(instance, per="llm")


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
        featurizer.transform(validation), validation.scores[:, columns], progress=progress)
    return SavedGate(gate=gate, featurizer=featurizer, columns=tuple(outcomes.columns[i] for i in columns))


def held_out_objective(instance: Instance, outcomes: Outcomes, split: Split, saved: SavedGate,
                       metric: str = "accuracy") -> GatedObjective:
    """F on the held-out queries, weighted by the instance's category shares; ``outcomes`` has
    one column per distinct LLM of the instance, as :func:`scenario_outcomes` gives."""
    held = outcomes.subset(split.held_out)
    logits = saved.gate.logits(saved.featurizer.transform(held))
    return GatedObjective(instance, logits, held.scores, share_weights(held.category, instance.shares),
                          expert_columns=expert_columns(instance), metric=metric, floor=saved.gate.floor)


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


def build_objective(scenario, *, top_k: int | None = None, seed: int = 0, outcomes_path: str | Path | None = None,
                    metric: str = "accuracy", queries: int = DEFAULT_QUERIES) -> GatedObjective:
    """F(S) for a scenario: see :func:`train_system`."""
    return train_system(scenario, top_k=top_k, seed=seed, outcomes_path=outcomes_path, metric=metric,
                        queries=queries).objective


# ---------------------------------------------------------------- the optimality-preserving check


@dataclass(frozen=True)
class SubsetGap:
    """F of one selection with the full-set gate restricted to it, and with a gate retrained on
    its LLMs alone; ``gap`` > 0 means retraining would have done better."""

    mask: int
    restricted: float
    retrained: float

    @property
    def gap(self) -> float:
        return self.retrained - self.restricted


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


def optimality_gaps(system: GateSystem, masks, progress: ProgressCallback | None = None) -> list[SubsetGap]:
    """For each mask: F restricted from the full-set gate, and F of a gate trained (same settings,
    same split) on the selection's LLMs only; ``progress`` gets a ``retraining`` event after each."""
    objective = system.objective
    featurizer = system.saved.featurizer
    train, validation, held = (system.outcomes.subset(part) for part in
                               (system.split.train, system.split.validation, system.split.held_out))
    x_train, x_val, x_held = (featurizer.transform(part) for part in (train, validation, held))
    settings = system.saved.gate.settings()
    out = []
    step = step_counter("retraining", len(masks), progress)
    for mask in masks:
        columns = np.flatnonzero(objective.column_masks(np.array([mask]))[0] >> np.arange(objective.n_columns) & 1)
        gate = TopKGate(**settings).fit(x_train, train.scores[:, columns], x_val, validation.scores[:, columns])
        retrained = gate_value(gate.logits(x_held), held.scores[:, columns], objective.weights, objective.k,
                               metric=objective.metric, floor=objective.floor)
        out.append(SubsetGap(mask=int(mask), restricted=objective.value(int(mask)), retrained=retrained))
        step()
    return out
