"""The gate as a router: the trained top-k gating network behind the router contract.

Fitted on every query of a table, as deployed, with early stopping and the sharpening
temperature decided on a quarter of them (:func:`~moe2_cli.gating.crossfit.fit_on`). The
deployed gate is cached by content; a hit gives the same bits as training.
"""

from __future__ import annotations

import numpy as np

from moe2_cli.gating.cache import GateCache, entry_key
from moe2_cli.gating.crossfit import fit_on, gate_logits
from moe2_cli.gating.features import FeatureSpec
from moe2_cli.gating.model import SavedGate, TopKGate, gate_from_parts, gate_parts
from moe2_cli.gating.router import Router, json_array, json_of
from moe2_cli.outcomes import Outcomes


def gate_settings(outcomes: Outcomes, k: int, *, seed: int = 0, hidden: int = 0, sharpen: bool = True) -> dict:
    """Everything a trained gate depends on besides the table: the cache key's settings."""
    return {"features": FeatureSpec.for_outcomes(outcomes).to_dict(),
            "gate": TopKGate(k=k, hidden=hidden, seed=seed, sharpen=sharpen).settings()}


def train_deployed(outcomes: Outcomes, k: int, *, seed: int = 0, hidden: int = 0, sharpen: bool = True,
                   use_cache: bool = True) -> SavedGate:
    """The gate to deploy: trained (with early stopping inside them) on every query. Cached."""
    cache = GateCache(use_cache)
    key = entry_key("deployed", outcomes, gate_settings(outcomes, k, seed=seed, hidden=hidden, sharpen=sharpen))
    saved = cache.load_gate(key)
    if saved is None:
        saved = fit_on(outcomes, np.arange(outcomes.n_queries), k, seed=seed, hidden=hidden, sharpen=sharpen)
        cache.store_gate(key, saved)
    return saved


class GateRouter(Router):
    """The top-``k`` gate trained on every query (``seed`` drives its initialisation and the
    early-stopping split); ``saved_`` is the trained gate with its featuriser."""

    name = "gate"
    saved_: SavedGate

    def __init__(self, k: int = 2, seed: int = 0, sharpen: bool = True):
        self.k = k
        self.seed = seed
        self.sharpen = sharpen

    @classmethod
    def configured(cls, *, k: int, seed: int) -> GateRouter:
        return cls(k=k, seed=seed)

    def settings(self) -> dict:
        return {"k": self.k, "seed": self.seed, "sharpen": self.sharpen}

    def fit(self, outcomes: Outcomes) -> GateRouter:
        return self._fitted(fit_on(outcomes, np.arange(outcomes.n_queries), self.k, seed=self.seed,
                                   sharpen=self.sharpen))

    def fit_cached(self, outcomes: Outcomes, use_cache: bool = True) -> GateRouter:
        """:meth:`fit` through the deployed-gate cache that ``gating train`` and ``gating eval``
        share (a hit: the same bits as training)."""
        return self._fitted(train_deployed(outcomes, self.k, seed=self.seed, sharpen=self.sharpen,
                                           use_cache=use_cache))

    def _fitted(self, saved: SavedGate) -> GateRouter:
        self.saved_ = saved
        self.categories_, self.columns_ = saved.featurizer.spec.categories, saved.columns
        return self

    def logits(self, table: Outcomes) -> np.ndarray:
        return gate_logits(self.saved_, table)

    def numeric_mean(self) -> np.ndarray | None:
        return self.saved_.featurizer.mean_ if self.saved_.featurizer.spec.numeric_dim else None

    def state(self) -> dict[str, np.ndarray]:
        meta, arrays = gate_parts(self.saved_)
        return {"meta": json_array(meta), **arrays}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> GateRouter:
        saved = gate_from_parts(json_of(state, "meta"), {n: v for n, v in state.items() if n != "meta"})
        gate = saved.gate
        return cls(k=gate.k, seed=gate.seed, sharpen=gate.sharpen)._fitted(saved)
