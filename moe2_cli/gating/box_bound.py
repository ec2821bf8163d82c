"""An upper bound on the gated F over a box of selections, valid although F is not monotone.

A box holds the selections S with IN ⊆ S ⊆ IN ∪ FREE (bit masks p ⊆ q). The gate offers S's
columns (LLMs) to each query and mixes the k best-ranked by a softmax of their logits, so a
query's value is a weighted average of the scores of its top k. Over the box, per query:

- a column n of q can be in the top k only if fewer than k columns of p rank above it
  (a *candidate*);
- a column of p with fewer than k columns of q ranked above it is in every top k (*forced*):
  its softmax weight relative to the other forced columns is fixed.

So the query's value is at most the best weighted average of all forced columns plus any subset
of the other candidates, each with weight e^{logit}. That maximum takes the other candidates in
descending score while they raise the average: a best prefix in score order. Without forced
columns it is the best candidate's score; once the top k is settled (no other candidates) it is
the query's value itself. The box bound sums the queries' bounds in F's integer units, each
rounded up, or to nearest as F rounds it once the query's top k is settled (then its value is
F's own), so it is never below F of any selection in the box, bit for bit, and a box whose
selections all tie the incumbent is bounded at the incumbent's value.

Selections of the same columns have the same F (a second copy of an LLM neither takes a top-k
slot nor changes a weight): the objective names the columns as its expert classes, and the
solvers let an expert whose class p already holds leave the box.

:class:`~moe2_cli.gating.ensemble.GatedObjective` offers this bound through the objective
contract (``box_bound``); solvers never use this module directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from moe2_cli.gating.tables import byte_or, byte_sum

if TYPE_CHECKING:  # the objective builds its bound: named for type checking only
    from moe2_cli.gating.ensemble import GatedObjective

_TINY = 1e-280  # forced softmax weights below this (relative to the best logit) may have underflowed
# A settled query value this close to a half unit is rounded up, not to nearest: F and the bound
# sum the same terms in different orders, which moves a value of up to 2^31 units by ~1e-5.
_HALF = 1e-4
_ELEMENTS = 1 << 18  # (box, query, column) elements per block: temporaries stay small


class GatedBound:
    """Vectorised box bounds for one :class:`GatedObjective`.

    Per query a column mask is held as bits at the columns' gate ranks (rank-bit tables, as
    in F's own k >= 3 path), so candidates and forced columns are a few uint64 operations per
    (box, query); only the best prefix in score order is worked out column by column.
    """

    def __init__(self, objective: GatedObjective):
        self.objective = objective
        self.k = objective.k
        q, m = objective.logits.shape
        order, rank = objective.order, objective.rank  # (Q, M): columns in gate order, and back
        logits = np.take_along_axis(objective.logits, order, axis=1)
        scores = np.take_along_axis(objective.scores_for_metric(), order, axis=1)
        ee = np.exp(logits - logits[:, :1])  # relative to the query's best logit: at most 1
        es = ee * scores
        bits = np.left_shift(np.uint64(1), rank.astype(np.uint64))
        self.rank_bits = [byte_or(bits[:, s:s + 8]) for s in range(0, m, 8)]  # (256, Q) per column byte
        self.sums = [byte_sum(es[:, s:s + 8] + 1j * ee[:, s:s + 8]) for s in range(0, m, 8)]  # per rank byte
        self.row_start = np.arange(q, dtype=np.intp) * 256
        by_score = np.argsort(-scores, axis=1, kind="stable")  # gate positions by descending score
        self.ee_by_score = np.take_along_axis(ee, by_score, axis=1)
        self.es_by_score = np.take_along_axis(es, by_score, axis=1)
        # Per gate-rank byte, (Q, 256) flattened: the same ranks as bits at their score positions.
        score_bits = np.left_shift(np.uint64(1), np.argsort(by_score, axis=1).astype(np.uint64))
        self.score_bits = [byte_or(score_bits[:, s:s + 8]).T.reshape(-1) for s in range(0, m, 8)]
        self.scores = scores
        self.sorted_scores = np.take_along_axis(scores, by_score, axis=1)
        self.unit_weights = np.ldexp(objective.weights, objective.exponent)
        self.empty = 0.0 if objective.metric == "accuracy" else objective.floor

    def bound(self, low, high) -> np.ndarray:
        """Upper bounds on F over the boxes [low_b, high_b] of expert masks (low ⊆ high)."""
        columns = self.objective.column_masks
        p = columns(low).reshape(-1)  # column masks: int64 whatever the number of experts
        q = columns(high).reshape(-1)
        size = max(1, _ELEMENTS // self.scores.size)
        totals = [self._block(p[s:s + size], q[s:s + size]) for s in range(0, p.size, size)]
        units = np.concatenate(totals) if totals else np.zeros(0)
        return np.ldexp(units, -self.objective.exponent)

    def _ranked(self, masks: np.ndarray) -> np.ndarray:
        """(B, Q) uint64: each mask's columns as bits at their gate ranks, per query."""
        out = self.rank_bits[0][masks & 255]
        for j in range(1, len(self.rank_bits)):
            out |= self.rank_bits[j][(masks >> (8 * j)) & 255]
        return out

    def _by_score(self, ranked: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """(N,) uint64 gate-rank bits of rows (queries at ``starts``) to bits at score positions."""
        rank_bytes = ranked.view(np.uint8).reshape(-1, 8)
        out = np.zeros(ranked.size, dtype=np.uint64)
        for j, table in enumerate(self.score_bits):
            out |= table.take(starts + rank_bytes[:, j])
        return out

    def _sum(self, ranked: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Complex (N,): sum e^h p + i sum e^h over the ranks set in each row of ``ranked``."""
        rank_bytes = ranked.view(np.uint8).reshape(-1, 8)
        total = np.zeros(ranked.size, dtype=complex)
        for j, table in enumerate(self.sums):
            total += table.take(starts + rank_bytes[:, j])
        return total

    def _top_score(self, by_score: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The score of each row's best column (its lowest set bit in score order); rows not empty."""
        first = np.bitwise_count((by_score & (~by_score + np.uint64(1))) - np.uint64(1)).astype(np.intp)
        return self.sorted_scores[query, first]

    def bound_without(self, low: int, high: int, removed) -> np.ndarray:
        """The bounds of the boxes [low, high minus removed_j], equal to :meth:`bound`'s bit for
        bit, where each ``removed_j`` takes every expert of ``high`` hosting its columns and
        ``low`` holds none of them. Only the queries
        where a removed column is a candidate are worked out again: elsewhere it ranks below k
        columns of ``low``, so it is neither a candidate nor above a forced column."""
        columns = self.objective.column_masks
        in_p = self._ranked(columns([low]))[0]
        in_q = self._ranked(columns([high]))[0]
        parent = self._units(in_p, in_q, np.arange(in_q.size))
        gone = self._ranked(columns(removed).reshape(-1))  # (R, Q)
        box, query = np.nonzero(gone & (in_q & _through_kth(in_p, self.k))[None])
        fresh = self._units(in_p[query], in_q[query] & ~gone[box, query], query)
        change = np.zeros(gone.shape[0])
        np.add.at(change, box, parent[query] - fresh)  # integers in floats: exact
        return np.ldexp(parent.sum() - change, -self.objective.exponent)

    def _block(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Per box, the sum over queries of the query bound in F's units."""
        n_queries = self.scores.shape[0]
        query = np.tile(np.arange(n_queries), p.size)
        units = self._units(self._ranked(p).reshape(-1), self._ranked(q).reshape(-1), query)
        return units.reshape(p.size, n_queries).sum(axis=1)

    def _units(self, in_p: np.ndarray, in_q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per row (a query's rank bits of p and of q, and the query), the query's bound in F's
        units, rounded as :func:`_round` rounds; the weighted prefix is worked out only where it
        can beat the forced average."""
        value = np.full(in_q.size, self.empty)
        live = np.flatnonzero(in_q & _through_kth(in_p, self.k))  # rows with a candidate
        query = rows[live]
        starts = self.row_start[query]
        cand = in_q[live] & _through_kth(in_p[live], self.k)  # fewer than k columns of p rank above
        forced = in_p[live] & _through_kth(in_q[live], self.k)  # fewer than k columns of q rank above
        fsum = self._sum(forced, starts)
        fes, fe = fsum.real, fsum.imag
        # No forced weight, or one that underflowed: the best candidate's score, which bounds
        # every weighted average of candidates.
        best = self._top_score(self._by_score(cand, starts), query)
        weighted = fe >= _TINY
        alone = np.where(weighted, fes / np.where(weighted, fe, 1.0), best)
        optional = np.where(weighted & (np.bitwise_count(forced) < self.k), cand & ~forced, np.uint64(0))
        some = np.flatnonzero(optional)
        if some.size:
            by_score = self._by_score(optional[some], starts[some])
            # Adding a column scored below the current average only lowers it: the best prefix
            # beats the forced average only when the best optional column does.
            rise = self._top_score(by_score, query[some]) > alone[some]
            some, by_score = some[rise], by_score[rise]
        if some.size:
            alone[some] = np.maximum(alone[some], self._best_prefix(by_score, query[some], fes[some], fe[some]))
        value[live] = alone
        if self.objective.metric != "accuracy":
            value = np.log(value)
        settled = np.ones(in_q.size, dtype=bool)  # rows without a candidate: the empty value
        settled[live] = weighted & ((cand & ~forced) == 0)
        return _round(value * self.unit_weights[rows], settled)

    def _best_prefix(self, by_score: np.ndarray, query: np.ndarray, fes: np.ndarray, fe: np.ndarray) -> np.ndarray:
        """The best weighted average of the forced columns plus a prefix, in score order, of the
        optional columns (bits at score positions); only the positions up to the last one set
        anywhere are unpacked."""
        width = int(np.bitwise_or.reduce(by_score)).bit_length()
        opt = _unpack(by_score, width)  # (S, width) 0/1 in score order
        ce = fe[:, None] + np.cumsum(opt * self.ee_by_score[query, :width], axis=1)
        ces = fes[:, None] + np.cumsum(opt * self.es_by_score[query, :width], axis=1)
        return np.where(opt.astype(bool), ces / ce, -np.inf).max(axis=1)


def _round(units: np.ndarray, settled: np.ndarray) -> np.ndarray:
    """Query bounds to F's integer units. A settled query (its top k is the same for every
    selection of the box, so its value is F's own) is rounded to nearest as F rounds it, so a
    box of selections that all tie the incumbent is bounded at the incumbent's value and
    pruned. Other bounds are rounded up, and so is a settled value within _HALF of a half
    unit, where float round-off in a different order of summation could tip F's rounding."""
    near = settled & (np.abs(units - np.floor(units) - 0.5) > _HALF)
    return np.where(near, np.rint(units), np.ceil(units))


def _through_kth(ranked: np.ndarray, k: int) -> np.ndarray:
    """Bits at every rank up to and including the k-th set bit of ``ranked`` (all, if fewer)."""
    rest = ranked.copy()
    one = np.uint64(1)
    for _ in range(k - 1):
        rest &= rest - one  # clear the lowest set bit
    kth = rest & (~rest + one)
    return np.where(kth != 0, (kth << one) - one, ~np.uint64(0))


def _unpack(ranked: np.ndarray, m: int) -> np.ndarray:
    """uint64 (...) to uint8 0/1 (..., m), bit r at position r."""
    bits = np.unpackbits(ranked.view(np.uint8).reshape(*ranked.shape, 8), axis=-1, bitorder="little")
    return bits[..., :m]
