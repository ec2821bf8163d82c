"""Cross-fitted gate scores: every query is scored by a gate that never saw it.

The queries are cut into K folds, grouped by question text (duplicates stay together) and
stratified by category (each fold gets its share of every category). Gate f is trained on the
other K-1 folds, with early stopping on a part of those training folds, and scores fold f. The
logits of all folds together give F(S) on every query, where one random split gave it on a
third of them; the gate that is deployed is trained the same way on every query.

``folds=1`` keeps the plain split of :func:`moe2_cli.gating.pipeline.split_queries`: the gate
trains on half, early-stops on a sixth and scores the remaining third.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.features import FeatureSpec, QueryFeaturizer
from moe2_cli.gating.model import SavedGate, TopKGate
from moe2_cli.outcomes import Outcomes
from moe2_cli.progress import ProgressCallback, step_counter
from moe2_cli.rng import stream

DEFAULT_FOLDS = 5
INNER_FOLDS = 4  # early stopping holds out a quarter of the training queries, as the plain split does


@dataclass(frozen=True)
class CrossFit:
    """Out-of-fold gate scores: ``logits[q]`` came from the gate that did not see query q.
    ``rows`` are the scored queries (all of them, or the held-out third with one fold);
    ``fold[q]`` is the fold of query q (-1: used for training only)."""

    rows: np.ndarray
    logits: np.ndarray  # (len(rows), columns)
    fold: np.ndarray
    folds: int


def query_groups(outcomes: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """Each query's group (its question text, or its id without text) and each group's
    category (that of its first query)."""
    keys = outcomes.group_keys()
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    group = np.array([index[k] for k in keys], dtype=np.int64)
    first = np.full(len(index), -1, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group))[::-1]  # the last write per group is its first query
    return group, outcomes.category[first]


def assign_folds(outcomes: Outcomes, folds: int, seed: int) -> np.ndarray:
    """Fold of every query: groups are shuffled within their category and dealt out in turn,
    so every fold gets about 1/K of each category and no text is in two folds."""
    group, group_category = query_groups(outcomes)
    if len(group_category) < folds:
        raise InputError(Diagnostic(outcomes.source, None, None, f"need at least {folds} distinct questions "
                                    f"for {folds} folds (got {len(group_category)})"))
    rng = stream(seed, "folds")
    fold_of_group = np.empty(len(group_category), dtype=np.int64)
    dealt = 0
    for c in range(len(outcomes.categories)):
        members = np.flatnonzero(group_category == c)
        # Continue the deal where the last category stopped, so small categories do not all
        # land in fold 0.
        fold_of_group[rng.permutation(members)] = (dealt + np.arange(members.size)) % folds
        dealt += members.size
    return fold_of_group[group]


def fit_on(outcomes: Outcomes, rows: np.ndarray, k: int, *, seed: int = 0, hidden: int = 0, columns=None,
           **gate_options) -> SavedGate:
    """Train a gate on the queries ``rows``: a quarter of their groups (stratified) stops the
    training early and picks the sharpening temperature, the rest fits the weights."""
    columns = np.arange(len(outcomes.columns)) if columns is None else np.asarray(columns)
    part = outcomes.subset(rows)
    groups = len(dict.fromkeys(part.group_keys()))
    if groups < 2:  # nothing to hold out: the training queries themselves stop the training
        train = validation = part
    else:
        inner = assign_folds(part, min(INNER_FOLDS, groups), seed)
        train, validation = part.subset(inner != 0), part.subset(inner == 0)
    featurizer = QueryFeaturizer(FeatureSpec.for_outcomes(outcomes)).fit(train)
    gate = TopKGate(k=k, hidden=hidden, seed=seed, **gate_options).fit(
        featurizer.transform(train), train.scores[:, columns],
        featurizer.transform(validation), validation.scores[:, columns], observed=train.observed_at(columns),
        observed_val=validation.observed_at(columns))
    return SavedGate(gate=gate, featurizer=featurizer, columns=tuple(outcomes.columns[i] for i in columns))


def gate_logits(saved: SavedGate, outcomes: Outcomes) -> np.ndarray:
    """The saved gate's scores h(x) for every query of ``outcomes``."""
    return saved.gate.logits(saved.featurizer.transform(outcomes))


def usable_folds(outcomes: Outcomes, folds: int) -> int:
    """``folds``, or fewer when there are fewer distinct questions (at least 2 folds: with fewer
    questions than that no query can be scored by a gate that did not see it)."""
    return max(2, min(folds, len(dict.fromkeys(outcomes.group_keys()))))


def cross_fit(outcomes: Outcomes, folds: int, k: int, *, seed: int = 0, progress: ProgressCallback | None = None,
              **gate_options) -> tuple[CrossFit, list[SavedGate]]:
    """Out-of-fold logits of K gates (fewer with fewer distinct questions, see
    :func:`usable_folds`) and the gates themselves; ``progress`` gets a ``cross-fitting`` event
    after each one."""
    folds = usable_folds(outcomes, folds)
    fold = assign_folds(outcomes, folds, seed)
    step = step_counter("cross-fitting", folds, progress)
    logits = np.empty((outcomes.n_queries, len(outcomes.columns)))
    gates = []
    for f in range(folds):
        saved = fit_on(outcomes, np.flatnonzero(fold != f), k, seed=seed, **gate_options)
        scored = np.flatnonzero(fold == f)
        logits[scored] = gate_logits(saved, outcomes.subset(scored))
        gates.append(saved)
        step()
    rows = np.arange(outcomes.n_queries)
    return CrossFit(rows=rows, logits=logits, fold=fold, folds=folds), gates
