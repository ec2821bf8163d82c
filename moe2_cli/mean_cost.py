"""Expected cost per query of a selection S under the router restricted to S (mean budgets).

F is computed on the router's evaluation queries; the mean cost is computed on the same ones.
Query q of category c uses the top-k LLMs of S in the router's order for q (ties to the lower
column, as F ranks them); each LLM is answered by its first copy in S (the lowest expert index,
as ``serve`` picks copies). Per query:

- energy: the sum of the chosen experts' ``energy_units[:, c]``;
- latency: the slowest used server's transmission plus the chosen experts' latencies on it
  (experts on one server run one after another), plus aggregation; nothing when S is empty.

Everything is in the instance's integer units; a category's budget holds when the sum over
its queries is at most the cap times their number, so every solver decides it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.problem import UNLIMITED, Instance

_CHUNK_ELEMENTS = 1 << 18  # masks x queries x columns per chunk


@dataclass(frozen=True, eq=False)
class Routing:
    """The evaluation queries as the router ranks them: ``order`` (Q, M) the columns best
    first, ``category`` (Q,) each query's category index, ``expert_columns`` (N,)."""

    order: np.ndarray
    category: np.ndarray
    expert_columns: np.ndarray

    @property
    def n_columns(self) -> int:
        return int(self.order.shape[1])

    def counts(self, n_categories: int) -> np.ndarray:
        """Queries per category, int64."""
        return np.bincount(self.category, minlength=n_categories).astype(np.int64)


@dataclass(frozen=True)
class MeanUse:
    """Per (selection, category) sums over the category's queries, integer units, (B, C)."""

    energy: np.ndarray
    latency: np.ndarray


def mean_use(routing: Routing, instance: Instance, masks) -> MeanUse:
    """Summed per-query energy and latency of each expert mask, per category."""
    flat = np.asarray(masks, dtype=np.int64).reshape(-1)
    q, m = routing.order.shape
    size = max(1, _CHUNK_ELEMENTS // max(1, q * m))
    parts = [_chunk(routing, instance, flat[i:i + size]) for i in range(0, flat.size, size)]
    c = len(instance.categories)
    if not parts:
        return MeanUse(np.zeros((0, c), dtype=np.int64), np.zeros((0, c), dtype=np.int64))
    return MeanUse(np.concatenate([e for e, _ in parts]), np.concatenate([t for _, t in parts]))


def query_use(routing: Routing, instance: Instance, mask: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's energy and latency (Q,) under one expert mask, integer units."""
    chosen, energy, latency, server = _gathered(routing, instance, np.array([mask], dtype=np.int64))
    return _energy(chosen, energy)[0], _latency(chosen, latency, server, instance)[0]


def _chunk(routing: Routing, instance: Instance, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    chosen, energy, latency, server = _gathered(routing, instance, masks)
    return (_per_category(routing, _energy(chosen, energy), len(instance.categories)),
            _per_category(routing, _latency(chosen, latency, server, instance), len(instance.categories)))


def _gathered(routing: Routing, instance: Instance, masks: np.ndarray):
    """(B, Q, M) in each query's router order: whether the column is among the query's top k
    in S, and the energy, latency and server of the column's first copy in S."""
    b, m, c = masks.size, routing.n_columns, len(instance.categories)
    col_mask = np.zeros(b, dtype=np.int64)
    energy = np.zeros((b, m, c), dtype=np.int64)
    latency = np.zeros((b, m, c), dtype=np.int64)
    server = np.zeros((b, m), dtype=np.int64)
    # Highest index first, so the lowest-index copy of a column is written last and kept.
    for i in reversed(range(instance.n_experts)):
        held = ((masks >> i) & 1).astype(bool)
        col = int(routing.expert_columns[i])
        col_mask[held] |= 1 << col
        energy[held, col] = instance.energy_units[i]
        latency[held, col] = instance.latency_units[i]
        server[held, col] = instance.expert_server[i]
    order = routing.order
    inside = ((col_mask[:, None, None] >> order[None]) & 1).astype(bool)
    chosen = inside & (np.cumsum(inside, axis=2) <= instance.top_k)
    flat = order * c + routing.category[:, None]  # (Q, M) index into a (M * C) row
    return (chosen, energy.reshape(b, -1)[:, flat], latency.reshape(b, -1)[:, flat],
            server[:, order])


def _energy(chosen: np.ndarray, energy: np.ndarray) -> np.ndarray:
    return np.where(chosen, energy, 0).sum(axis=2)


def _latency(chosen: np.ndarray, latency: np.ndarray, server: np.ndarray, instance: Instance) -> np.ndarray:
    out = np.zeros(chosen.shape[:2], dtype=np.int64)
    for s, transmission in enumerate(instance.transmission_units.tolist()):
        on = chosen & (server == s)
        work = np.where(on, latency, 0).sum(axis=2)
        out = np.maximum(out, np.where(on.any(axis=2), transmission + work, 0))
    return np.where(chosen.any(axis=2), out + instance.aggregation_units, 0)


def _per_category(routing: Routing, per_query: np.ndarray, n_categories: int) -> np.ndarray:
    out = np.zeros((per_query.shape[0], n_categories), dtype=np.int64)
    for c in range(n_categories):
        out[:, c] = per_query[:, routing.category == c].sum(axis=1)
    return out


# ---------------------------------------------------------------- a bound over a box


def box_lower(routing: Routing, instance: Instance, low: int, high: int) -> MeanUse:
    """Lower bounds (1, C) on the summed energy and latency of every selection S with
    low ⊆ S ⊆ high.

    S holds at least min(k, |LLMs of low|) LLMs, so each query uses at least that many. A
    column of low with fewer than k columns of high before it in the query's order is among
    its top k in every such S ("forced"); the others are at least the cheapest remaining
    candidates. A column's copy in S is one of high's copies, not after low's first copy: the
    cheapest of those bounds its cost. Latency is at least the slowest forced column, and at
    least the m-th fastest candidate when m columns answer.
    """
    cheap_e, cheap_t, low_cols, high_cols = _cheapest_copies(routing, instance, low, high)
    order, cat, k = routing.order, routing.category, instance.top_k
    used = min(k, len(low_cols))
    in_high = np.isin(order, high_cols)
    forced = np.isin(order, low_cols) & (np.cumsum(in_high, axis=1) - in_high < k)
    e = cheap_e[order, cat[:, None]]
    rest = np.sort(np.where(in_high & ~forced, e, UNLIMITED), axis=1)
    fill = (used - forced.sum(axis=1))[:, None] > np.arange(order.shape[1])[None, :]
    energy = np.where(forced, e, 0).sum(axis=1) + np.where(fill, rest, 0).sum(axis=1)
    t = cheap_t[order, cat[:, None]]
    latency = np.zeros(len(order), dtype=np.int64)
    if used:
        slowest = np.where(forced, t, 0).max(axis=1)
        mth = np.sort(np.where(in_high, t, UNLIMITED), axis=1)[:, used - 1]
        latency = np.maximum(slowest, mth) + instance.aggregation_units
    c = len(instance.categories)
    return MeanUse(_per_category(routing, energy[None], c), _per_category(routing, latency[None], c))


def _cheapest_copies(routing: Routing, instance: Instance, low: int, high: int):
    """Per column (M, C): the least energy and least transmission + latency of a copy S may
    use; and the columns of ``low`` and of ``high``."""
    m, c = routing.n_columns, len(instance.categories)
    first_low: dict[int, int] = {}
    for i in range(instance.n_experts):
        if low >> i & 1:
            first_low.setdefault(int(routing.expert_columns[i]), i)
    cheap_e = np.full((m, c), UNLIMITED, dtype=np.int64)
    cheap_t = np.full((m, c), UNLIMITED, dtype=np.int64)
    high_cols = set()
    for i in range(instance.n_experts):
        col = int(routing.expert_columns[i])
        if not high >> i & 1 or i > first_low.get(col, i):
            continue
        high_cols.add(col)
        cheap_e[col] = np.minimum(cheap_e[col], instance.energy_units[i])
        reach = instance.transmission_units[instance.expert_server[i]] + instance.latency_units[i]
        cheap_t[col] = np.minimum(cheap_t[col], reach)
    return cheap_e, cheap_t, sorted(first_low), sorted(high_cols)


# ---------------------------------------------------------------- intervals

INTERVAL_NOTE = ("mean cost per query over the category's evaluation queries, the ones F is estimated "
                 "on; the interval resamples them as F's bootstrap does (query sampling only)")


def mean_intervals(routing: Routing, instance: Instance, mask: int, replicates: np.ndarray,
                   confidence: float) -> dict[str, dict[str, dict[str, float] | None]]:
    """Per resource ("energy_j", "latency_s") and category: the selection's mean cost per query
    with its percentile interval over the bootstrap ``replicates`` (R, Q) query weights (the
    category's weights renormalised; None for a category without queries)."""
    energy, latency = query_use(routing, instance, mask)
    tail = (1.0 - confidence) / 2.0
    out: dict[str, dict[str, dict[str, float] | None]] = {}
    for key, values, per_unit in (("energy_j", energy, 1_000), ("latency_s", latency, 1_000_000)):
        out[key] = {}
        for c, cat in enumerate(instance.categories):
            inside = routing.category == c
            if not inside.any():
                out[key][cat] = None
                continue
            cost = values[inside] / per_unit
            weights = replicates[:, inside]
            totals = weights.sum(axis=1)
            means = (weights @ cost)[totals > 0] / totals[totals > 0]
            low, high = np.quantile(means, [tail, 1.0 - tail]) if means.size else (np.nan, np.nan)
            out[key][cat] = {"estimate": float(cost.mean()), "low": float(low), "high": float(high)}
    return out
