"""The gate's honest competition: simple routers that also score every LLM for every query.

Each router is an estimator: ``fit(outcomes)`` returns self and ``preferences(outcomes)`` gives
a (Q, M) score per query and LLM column. Restricted to a selection S, a router sends a query to
the best-scored LLMs of S, so every router defines an F(S) of its own and the solvers work on
it unchanged. Scores become gate logits multiplied by :data:`SHARPNESS`: the top-k softmax then
puts all but a negligible weight on the router's first choice in S, which is what a router does.

The deployable ones implement the :class:`~moe2_cli.gating.router.Router` contract:

- ``lookup``: each category's best LLM in training (its mean score per category);
- ``label-lookup``: the same per query label (its tags, e.g. an LLMRouter task), falling back
  to the category for labels unseen in training and for queries without tags;
- ``logreg``: per-LLM logistic regression of correctness on the gate's features (all LLMs
  at once by full-batch Adam: scikit-learn's solvers took tens of seconds per LLM on the
  hashed text), the regularisation chosen on a held-out quarter of the training queries.

``best-single`` and ``oracle`` are the references: one LLM for everything, and the LLM that
was right (no router can beat it; it reads the answers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from moe2_cli.gating.ensemble import share_weights
from moe2_cli.gating.features import FeatureSpec, QueryFeaturizer
from moe2_cli.gating.router import (
    Router,
    float_array,
    json_array,
    json_of,
    names_array,
    names_of,
    names_state,
    read_names,
)
from moe2_cli.outcomes import Outcomes
from moe2_cli.rng import stream

SHARPNESS = 1e4  # a 0.1-point difference in preference leaves the runner-up e^-10 of the weight
LOGREG_L2 = (1e-5, 1e-4, 1e-3)  # per query and LLM: C = 1 / (l2 * Q) in scikit-learn's terms
_LOGREG_ITERATIONS = 200
_LOGREG_RATE = 0.05


class Sharpened(ABC):
    """Logits of a router that scores by preferences: the preferences times :data:`SHARPNESS`."""

    @abstractmethod
    def preferences(self, outcomes: Outcomes) -> np.ndarray:
        """Scores (Q, M) in the units of the outcome scores."""

    def logits(self, table: Outcomes) -> np.ndarray:
        return SHARPNESS * self.preferences(table)


class BestSingle(Sharpened):
    """Every query goes to the LLM with the best training mean, weighted by traffic share."""

    def __init__(self, shares):
        self.shares = shares

    def fit(self, outcomes: Outcomes) -> BestSingle:
        self.means_ = share_weights(outcomes.category, self.shares) @ outcomes.scores
        return self

    def preferences(self, outcomes: Outcomes) -> np.ndarray:
        return np.broadcast_to(self.means_, (outcomes.n_queries, self.means_.size)).copy()


class CategoryLookup(Sharpened, Router):
    """Every query goes to its category's best LLM in training (overall best where the
    category had no training queries)."""

    name = "lookup"

    def fit(self, outcomes: Outcomes) -> CategoryLookup:
        means = outcomes.mean_scores().T  # (C, M)
        self.means_ = np.where(np.isnan(means), outcomes.scores.mean(axis=0), means)
        self.categories_, self.columns_ = tuple(outcomes.categories), tuple(outcomes.columns)
        return self

    def preferences(self, outcomes: Outcomes) -> np.ndarray:
        return self.means_[outcomes.category]

    def state(self) -> dict[str, np.ndarray]:
        return {**names_state(self), "means": self.means_}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> CategoryLookup:
        router = read_names(cls(), state)
        router.means_ = float_array(state, "means", (len(router.categories_), len(router.columns_)))
        return router


def tag_labels(outcomes: Outcomes) -> tuple[str | None, ...]:
    """One label per query from its tags (an LLMRouter task, a file's ``tags``); None without."""
    if outcomes.tags is None:
        return (None,) * outcomes.n_queries
    return tuple("+".join(tags) if tags else None for tags in outcomes.tags)


class LabelLookup(Sharpened, Router):
    """Every query goes to its label's best LLM in training (:func:`tag_labels`); labels unseen
    in training (or queries without one) fall back to the category lookup."""

    name = "label-lookup"

    def fit(self, outcomes: Outcomes) -> LabelLookup:
        self.fallback_ = CategoryLookup().fit(outcomes)
        labels = np.asarray(tag_labels(outcomes), dtype=object)
        self.means_ = {label: outcomes.scores[labels == label].mean(axis=0) for label in dict.fromkeys(labels)
                       if label is not None}
        self.categories_, self.columns_ = self.fallback_.categories_, self.fallback_.columns_
        return self

    def preferences(self, outcomes: Outcomes) -> np.ndarray:
        out = self.fallback_.preferences(outcomes)
        for q, label in enumerate(tag_labels(outcomes)):
            if label in self.means_:
                out[q] = self.means_[label]
        return out

    def state(self) -> dict[str, np.ndarray]:
        means = np.array(list(self.means_.values())).reshape(len(self.means_), len(self.columns_))
        return {**self.fallback_.state(), "labels": names_array(self.means_), "label_means": means}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> LabelLookup:
        router = cls()
        router.fallback_ = CategoryLookup.from_state(state)
        router.categories_, router.columns_ = router.fallback_.categories_, router.fallback_.columns_
        labels = names_of(state, "labels")
        means = float_array(state, "label_means", (len(labels), len(router.columns_)))
        router.means_ = dict(zip(labels, means))
        return router


class LogisticRouter(Sharpened, Router):
    """Per-LLM logistic regression of a right answer on the gate's features, all LLMs fitted
    at once; the L2 penalty from :data:`LOGREG_L2` by log-loss on a held-out
    quarter of the training queries."""

    name = "logreg"

    def __init__(self, seed: int = 0):
        self.seed = seed

    @classmethod
    def configured(cls, *, k: int, seed: int) -> LogisticRouter:
        return cls(seed)

    def settings(self) -> dict:
        return {"seed": self.seed, "l2_grid": LOGREG_L2, "iterations": _LOGREG_ITERATIONS, "rate": _LOGREG_RATE}

    def fit(self, outcomes: Outcomes) -> LogisticRouter:
        held = stream(self.seed, "router-holdout").random(outcomes.n_queries) < 0.25
        self.featurizer_ = QueryFeaturizer(FeatureSpec.for_outcomes(outcomes)).fit(outcomes)
        X = self.featurizer_.transform(outcomes)
        losses = [_log_loss(_fit_logistic(X[~held], outcomes.scores[~held], l2), X[held], outcomes.scores[held])
                  for l2 in LOGREG_L2]
        self.l2_ = LOGREG_L2[int(np.argmin(losses))]
        self.coef_ = _fit_logistic(X, outcomes.scores, self.l2_)
        self.categories_, self.columns_ = tuple(outcomes.categories), tuple(outcomes.columns)
        return self

    def preferences(self, outcomes: Outcomes) -> np.ndarray:
        return expit(_linear(self.coef_, self.featurizer_.transform(outcomes)))

    def numeric_mean(self) -> np.ndarray | None:
        return self.featurizer_.mean_ if self.featurizer_.spec.numeric_dim else None

    def state(self) -> dict[str, np.ndarray]:
        featurizer = {f"features_{n}": v for n, v in self.featurizer_.state().items()}
        return {**names_state(self), "spec": json_array(self.featurizer_.spec.to_dict()), "coef": self.coef_,
                "l2": np.array(self.l2_), **featurizer}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> LogisticRouter:
        router = read_names(cls(), state)
        spec = FeatureSpec.from_dict(json_of(state, "spec"))
        if spec.categories != router.categories_:
            raise ValueError("the feature spec's categories are not the router's")
        router.featurizer_ = QueryFeaturizer.from_state(spec, _featurizer_state(state, spec))
        router.coef_ = float_array(state, "coef", (spec.dim + 1, len(router.columns_)))
        router.l2_ = float(float_array(state, "l2", ()))
        return router


def _featurizer_state(state: dict[str, np.ndarray], spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The featuriser's learned arrays, each of the size the spec implies."""
    sizes = {"idf": spec.text_dim if spec.text_dim and spec.tfidf else 0,
             "numeric_mean": spec.numeric_dim, "numeric_scale": spec.numeric_dim}
    return {name: float_array(state, f"features_{name}", (size,)) for name, size in sizes.items() if size}


def expit(z: np.ndarray) -> np.ndarray:
    """The logistic function, written with tanh so it cannot overflow (scipy stays unimported
    until features are built)."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _linear(coef: np.ndarray, X) -> np.ndarray:
    """X W + b with the intercepts b in the last row of ``coef``."""
    return np.asarray(X @ coef[:-1]) + coef[-1]


def _fit_logistic(X, Y: np.ndarray, l2: float) -> np.ndarray:
    """Minimise the mean log-loss of every column of Y (scores in [0, 1] as soft labels) plus
    ``l2 / 2 * |W|^2`` (intercepts unpenalised) by full-batch Adam, as the gate is trained;
    returns (D + 1, M) coefficients."""
    coef = np.zeros((X.shape[1] + 1, Y.shape[1]))
    coef[-1] = np.log(np.clip(Y.mean(axis=0), 1e-3, 1 - 1e-3) / np.clip(1 - Y.mean(axis=0), 1e-3, 1))
    m, v = np.zeros_like(coef), np.zeros_like(coef)
    for it in range(1, _LOGREG_ITERATIONS + 1):
        g = (expit(_linear(coef, X)) - Y) / len(Y)
        grad = np.vstack([np.asarray(X.T @ g) + l2 * coef[:-1], g.sum(axis=0)])
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        coef -= _LOGREG_RATE * (m / (1 - 0.9**it)) / (np.sqrt(v / (1 - 0.999**it)) + 1e-8)
    return coef


def _log_loss(coef: np.ndarray, X, Y: np.ndarray) -> float:
    z = _linear(coef, X)
    return float(np.mean(np.logaddexp(0.0, z) - Y * z))


class Oracle(Sharpened):
    """The LLM that was right: an upper bound, not a router (it reads the answers)."""

    def fit(self, outcomes: Outcomes) -> Oracle:
        return self

    def preferences(self, outcomes: Outcomes) -> np.ndarray:
        return np.array(outcomes.scores)


def out_of_fold_logits(make_router, outcomes: Outcomes, fold: np.ndarray, folds: int) -> np.ndarray:
    """Logits of queries in fold f from a router fitted on the other folds."""
    logits = np.empty((outcomes.n_queries, len(outcomes.columns)))
    for f in range(folds):
        rows = np.flatnonzero(fold == f)
        if rows.size:
            router = make_router().fit(outcomes.subset(np.flatnonzero(fold != f)))
            logits[rows] = router.logits(outcomes.subset(rows))
    return logits
