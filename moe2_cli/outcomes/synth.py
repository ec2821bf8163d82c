"""Seeded synthetic outcomes from per-category accuracies (the model is in docs/outcomes.md).

Each query q has a category c (drawn to match the traffic shares), a topic t within it, a
difficulty d and a feature vector x = mu[c, t] + noise, so the topic can be read off x. LLM l
answers correctly when its latent

    z[q, l] = b[l, c] + s * g[l, c, t] - lam * d[q] + sigma * e[q, l]

is positive: g is the LLM's skill on the topic (what a gate can learn), the shared difficulty d
correlates errors across LLMs (so the per-query oracle stays well below 100 %), and e is the
LLM's own noise. The offsets b[l, c] are solved on the drawn sample so that every LLM's accuracy
in every category equals its profile accuracy to within half a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moe2_cli.outcomes.table import Outcomes
from moe2_cli.problem import Instance
from moe2_cli.rng import stream

FEATURE_DECIMALS = 6  # stored rounded, so a written and re-read table is the same table


@dataclass(frozen=True)
class SynthModel:
    """Parameters of the generative model (the defaults are what ``moe2 synth`` uses)."""

    topics: int = 4  # topics per category
    feature_dim: int = 16
    difficulty_weight: float = 2.0  # lam: weight of the shared difficulty
    skill_spread: float = 1.0  # s: spread of topic skill around the category level
    noise: float = 1.0  # sigma: each LLM's own noise
    feature_noise: float = 0.5  # how blurred the topic is in x


def category_counts(shares, n_queries: int) -> np.ndarray:
    """Queries per category: shares x n, rounded by largest remainder so they sum to n."""
    shares = np.asarray(shares, dtype=float)
    raw = shares / shares.sum() * n_queries
    counts = np.floor(raw).astype(np.int64)
    # Stable order: equal remainders go to the earlier category.
    extra = np.argsort(-(raw - counts), kind="stable")[: n_queries - counts.sum()]
    counts[extra] += 1
    return counts


def synthesize(llms: Sequence[str], categories: Sequence[str], shares, accuracy, n_queries: int, seed: int,
               model: SynthModel = SynthModel()) -> Outcomes:
    """Outcomes keyed by LLM: ``accuracy[l, c]`` is the target accuracy of ``llms[l]`` on
    ``categories[c]``; 0/1 scores; features in ``features``; no text."""
    if n_queries < 1:
        raise ValueError(f"n_queries must be >= 1 (got {n_queries})")
    rng = stream(seed, "synthetic-outcomes")
    accuracy = np.clip(np.asarray(accuracy, dtype=float), 0.0, 1.0)
    n_llms, n_cats = accuracy.shape
    category = rng.permutation(np.repeat(np.arange(n_cats), category_counts(shares, n_queries)))
    topic = rng.integers(model.topics, size=n_queries)
    difficulty = rng.standard_normal(n_queries)
    centroids = rng.standard_normal((n_cats, model.topics, model.feature_dim))
    features = centroids[category, topic] + model.feature_noise * rng.standard_normal((n_queries, model.feature_dim))
    skill = rng.standard_normal((n_llms, n_cats, model.topics))
    noise = rng.standard_normal((n_queries, n_llms))
    latent = (model.skill_spread * skill[:, category, topic].T - model.difficulty_weight * difficulty[:, None]
              + model.noise * noise)
    offsets = _calibrate(latent, category, accuracy)
    scores = (latent + offsets[:, category].T > 0).astype(float)
    return Outcomes(
        qids=tuple(f"synth-{q:05d}" for q in range(n_queries)), categories=tuple(categories), category=category,
        columns=tuple(llms), scores=scores, features=np.round(features, FEATURE_DECIMALS), source="synthetic",
    )


def _calibrate(latent: np.ndarray, category: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Offsets b (L, C) so that exactly round(accuracy * n_c) queries of category c have
    latent + b > 0: a threshold midway between two order statistics of the sample, which is
    where bisection on the step function would land."""
    n_llms, n_cats = accuracy.shape
    offsets = np.zeros((n_llms, n_cats))
    for c in range(n_cats):
        values = -np.sort(-latent[category == c], axis=0)  # descending, per LLM
        n = values.shape[0]
        if n == 0:
            continue
        padded = np.vstack([values[:1] + 1.0, values, values[-1:] - 1.0])
        correct = np.rint(accuracy[:, c] * n).astype(np.int64)
        lo = padded[correct, np.arange(n_llms)]  # the m-th largest (or above the top when m = 0)
        hi = padded[correct + 1, np.arange(n_llms)]
        offsets[:, c] = -(lo + hi) / 2.0
    return offsets


def profile_accuracy(instance: Instance) -> tuple[tuple[str, ...], np.ndarray]:
    """The instance's LLMs (first-seen order) and each one's accuracy, averaged over the experts
    that host it (one LLM on two servers shares its answers, so it gets one accuracy)."""
    llms = tuple(dict.fromkeys(instance.expert_llms))
    which = np.array([llms.index(name) for name in instance.expert_llms])
    acc = np.array([instance.accuracy[which == i].mean(axis=0) for i in range(len(llms))])
    return llms, acc


def synthesize_for(instance: Instance, n_queries: int, seed: int, model: SynthModel = SynthModel()) -> Outcomes:
    """Synthetic outcomes for the LLMs and categories of ``instance``, keyed by LLM."""
    llms, acc = profile_accuracy(instance)
    return synthesize(llms, instance.categories, instance.shares, acc, n_queries, seed, model)
