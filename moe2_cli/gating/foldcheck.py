"""The optimality-preserving check over cross-fitting folds.

One split gives one noisy gap per selection; new queries showed gaps three times wider than a
single split suggested. Here every fold f of K (grouped and stratified as for F) holds out its
queries: a full-set gate and, for each selection S, a gate retrained on S's LLMs alone are
trained on the other folds with the same settings, and both are scored on fold f. The K
per-fold gaps of each selection, and of their mean, show how far a split's answer can move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.gating.crossfit import assign_folds, fit_on, gate_logits, usable_folds
from moe2_cli.gating.ensemble import gate_value, share_weights
from moe2_cli.gating.pipeline import GateSystem
from moe2_cli.progress import ProgressCallback, step_counter


@dataclass(frozen=True)
class FoldGaps:
    """F of each selection (columns) in each fold (rows): the full-set gate restricted to it,
    and a gate retrained on its LLMs; ``gaps`` > 0 where retraining did better."""

    masks: tuple[int, ...]
    restricted: np.ndarray  # (K, S)
    retrained: np.ndarray  # (K, S)

    @property
    def gaps(self) -> np.ndarray:
        return self.retrained - self.restricted


def _columns(system: GateSystem, mask: int) -> np.ndarray:
    column_mask = int(system.objective.column_masks([mask])[0])
    return np.flatnonzero(column_mask >> np.arange(system.objective.n_columns) & 1)


def fold_gaps(system: GateSystem, masks, folds: int, seed: int,
              progress: ProgressCallback | None = None) -> FoldGaps:
    """Per-fold F of every mask, restricted and retrained (``progress`` gets a ``retraining``
    event after each gate); the gates take the system's settings."""
    outcomes, objective = system.outcomes, system.objective
    settings = system.saved.gate.settings()
    folds = usable_folds(outcomes, folds)
    fold = assign_folds(outcomes, folds, seed)
    shares = system.instance.shares
    step = step_counter("retraining", folds * (len(masks) + 1), progress)
    restricted, retrained = np.empty((folds, len(masks))), np.empty((folds, len(masks)))
    for f in range(folds):
        rows, held = np.flatnonzero(fold != f), outcomes.subset(np.flatnonzero(fold == f))
        weights = share_weights(held.category, shares)
        full = gate_logits(fit_on(outcomes, rows, **settings), held)
        step()
        for j, mask in enumerate(masks):
            columns = _columns(system, mask)
            restricted[f, j] = _value(full[:, columns], held.scores[:, columns], weights, objective)
            gate = fit_on(outcomes, rows, columns=columns, **settings)
            retrained[f, j] = _value(gate_logits(gate, held), held.scores[:, columns], weights, objective)
            step()
    return FoldGaps(masks=tuple(int(m) for m in masks), restricted=restricted, retrained=retrained)


def _value(logits: np.ndarray, scores: np.ndarray, weights: np.ndarray, objective) -> float:
    """F of a gate over exactly these columns, all of them offered: restricting a gate to S is
    keeping S's columns of its scores."""
    return gate_value(logits, scores, weights, objective.k, metric=objective.metric, floor=objective.floor)
