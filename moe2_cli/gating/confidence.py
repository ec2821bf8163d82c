"""How sure F is: a paired, stratified bootstrap over queries.

F(S) is a share-weighted mean over queries, so a resample is a weight vector: within each
category its queries are drawn with replacement (as many as it has) and the category keeps its
traffic share. B resamples form a (B, Q) weight matrix; every F, gain or gap of the same
resamples is that matrix times a vector of per-query values, so differences between
selections are *paired* (the same queries in every resample) and one product costs
milliseconds.

The resamples hold the gates fixed, so they miss that a gate is itself a noisy fit: the
deployed gate is one more draw of it. Given each query's cross-fitting fold, the spread of the
K per-fold estimates beyond their query sampling noise measures the gate-to-gate variance
sigma_g^2; the interval is widened by sigma_g^2 (1 + 1/K), the variance of the deployed gate's
deviation minus the mean deviation of the K gates (docs/level2.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from moe2_cli.gating.ensemble import GatedObjective
from moe2_cli.gating.model import floored, restrict
from moe2_cli.rng import stream

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95


def bootstrap_weights(category: np.ndarray, shares, resamples: int, seed: int) -> np.ndarray:
    """(B, Q) query weights of ``resamples`` stratified resamples; each row sums to 1 and row b
    gives query q its category's share over its count, times how often resample b drew it."""
    category = np.asarray(category, dtype=np.int64)
    shares = np.asarray(shares, dtype=float)
    rng = stream(seed, "bootstrap")
    weights = np.zeros((resamples, category.size))
    present = 0.0
    for c in range(len(shares)):
        rows = np.flatnonzero(category == c)
        if rows.size == 0 or shares[c] <= 0:
            continue
        draws = rng.integers(0, rows.size, size=(resamples, rows.size))
        # Counts per (resample, query) in one bincount: resample b's draws are offset by b * n.
        # In place throughout: at B x Q = 1000 x 3000 each temporary costs as much as the draws.
        draws += rows.size * np.arange(resamples)[:, None]
        counts = np.bincount(draws.ravel(), minlength=resamples * rows.size).reshape(resamples, rows.size)
        scale = shares[c] / rows.size
        if rows[-1] - rows[0] + 1 == rows.size:  # the category's queries are contiguous: write in place
            np.multiply(counts, scale, out=weights[:, rows[0]:rows[-1] + 1])
        else:
            weights[:, rows] = counts * scale
        present += shares[c]
    weights /= present
    return weights


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap standard error and percentile interval."""

    estimate: float
    low: float
    high: float
    se: float

    @property
    def covers_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "se": self.se}


class FoldSpread:
    """Gate-to-gate variance of a share-weighted mean, from its K per-fold estimates."""

    def __init__(self, category: np.ndarray, fold: np.ndarray, shares):
        shares = np.asarray(shares, dtype=float)
        self.parts = []
        for f in np.unique(fold[fold >= 0]).tolist():
            rows = np.flatnonzero(fold == f)
            members = [np.flatnonzero(category[rows] == c) for c in range(len(shares))]
            # A category needs two queries in the fold for a sampling variance.
            strata = [(s, shares[c]) for c, s in enumerate(members) if s.size > 1 and shares[c] > 0]
            total = sum(share for _, share in strata)
            self.parts.append((rows, [(s, share / total) for s, share in strata]))

    @property
    def folds(self) -> int:
        return len(self.parts)

    def gate_variance(self, values: np.ndarray) -> float:
        """max(0, variance of the per-fold means - their mean sampling variance): the part of
        the fold-to-fold spread that query sampling does not explain."""
        means, noise = [], []
        for rows, strata in self.parts:
            v = values[rows]
            means.append(sum(share * v[s].mean() for s, share in strata))
            noise.append(sum(share ** 2 * v[s].var(ddof=1) / s.size for s, share in strata))
        return max(0.0, float(np.var(means, ddof=1)) - float(np.mean(noise)))


def query_values(objective: GatedObjective, masks) -> np.ndarray:
    """(len(masks), Q) unweighted per-query values of F for expert masks: the same quantity F
    sums with the share weights."""
    rows = []
    p = objective.scores if objective.metric == "accuracy" else floored(objective.scores, objective.floor)
    for column_mask in objective.column_masks(masks).reshape(-1).tolist():
        if column_mask == 0:
            mixed = np.full(len(p), 0.0 if objective.metric == "accuracy" else objective.floor)
        else:
            mixed = (restrict(objective.logits, objective.k, column_mask) * p).sum(axis=1)
        rows.append(mixed if objective.metric == "accuracy" else np.log(mixed))
    return np.array(rows)


class Bootstrap:
    """Paired bootstrap of F over one objective's queries (``category`` of each of them)."""

    def __init__(self, objective: GatedObjective, category: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = DEFAULT_CONFIDENCE, seed: int = 0, fold: np.ndarray | None = None,
                 shares=None):
        """``fold``: each query's cross-fitting fold; with two folds or more the intervals also
        cover the gate-to-gate noise (without it, or with one fold, query sampling only).
        ``category`` may be any strata with their ``shares`` (default: the instance's category
        traffic shares), as F's weights were built from (a traffic mix, see :mod:`.mix`)."""
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1 (got {confidence})")
        self.objective = objective
        self.confidence = confidence
        shares = objective.instance.shares if shares is None else shares
        self.weights = bootstrap_weights(category, shares, resamples, seed)
        spread = None if fold is None else FoldSpread(np.asarray(category), np.asarray(fold), shares)
        self.spread = spread if spread is not None and spread.folds >= 2 else None
        self._intervals: dict[tuple[int, ...], Interval] = {}  # a sweep asks about the same masks again and again

    def interval(self, values: np.ndarray) -> Interval:
        """Interval of the share-weighted mean of per-query ``values`` (Q,)."""
        replicates = self.weights @ values
        tail = (1.0 - self.confidence) / 2.0
        low, high = np.quantile(replicates, [tail, 1.0 - tail])
        estimate = float(self.objective.weights @ values)
        se = float(replicates.std(ddof=1))
        if self.spread is not None:
            extra = self.spread.gate_variance(values) * (1.0 + 1.0 / self.spread.folds)
            # Independent noises add in variance: each side of the percentile interval grows in
            # quadrature by the normal half-width of the gate noise.
            half = NormalDist().inv_cdf(1.0 - tail) ** 2 * extra
            low = estimate - np.sqrt((estimate - low) ** 2 + half)
            high = estimate + np.sqrt((high - estimate) ** 2 + half)
            se = float(np.sqrt(se ** 2 + extra))
        return Interval(estimate=estimate, low=float(low), high=float(high), se=se)

    def of(self, mask: int) -> Interval:
        """F(S) with its interval."""
        key = (mask,)
        if key not in self._intervals:
            self._intervals[key] = self.interval(query_values(self.objective, [mask])[0])
        return self._intervals[key]

    def difference(self, mask: int, other: int) -> Interval:
        """F(S) - F(S') with its paired interval."""
        key = (mask, other)
        if key not in self._intervals:
            values = query_values(self.objective, [mask, other])
            self._intervals[key] = self.interval(values[0] - values[1])
        return self._intervals[key]
