"""F(S): held-out performance of the two-level system (selection S, then the top-k gate in S).

For every held-out query q the gate's scores rank the M LLMs (columns). Inside S the gate
keeps the k best-ranked LLMs of S and mixes them by a softmax of their scores, so for k <= 2 a
query's value depends only on the ranks of the best two LLMs of S. That gives the fast path:

- ``pair[q, r1, r2]``: the weighted value of query q when its best two LLMs in S have ranks
  r1 < r2 (r2 = M: S holds one LLM; r1 = r2 = M: S is empty), as a scaled integer.
- Per byte of a column mask and per query, the best two ranks among that byte's LLMs, for all
  256 byte values (uint8 tables). A mask's best two ranks are these merged over its bytes with
  a few uint8 min/max operations; F is one gather from ``pair`` and a sum over queries.
- For all 2^N masks at once, every value of the upper bits is merged with the whole lowest-byte
  table in one step.

For k >= 3 (``_SoftmaxSums``), per byte of a column mask and per query, the byte's columns as
bits at their gate ranks (uint64 tables): OR-ed over the bytes they give S in query q's gate
order, and clearing the lowest set bit k times leaves the top k. The softmax sums
sum e^{h_n} p_n and sum e^{h_n} over those bits come from per-byte partial-sum tables, so no
exp is taken per mask. For masks with at most k columns the top k is all of S, and the two sums
are two matrix products. Both are checked against :meth:`GatedObjective.evaluate_generic`,
the plain vectorised definition, kept as the reference. F of all 2^M masks, of large batches and
of a few masks comes from the query-outer kernels of :mod:`moe2_cli.gating.kernels`, with the
same bits as these masks-outer tables (:meth:`GatedObjective.evaluate_masks_outer`).

Query values are stored as integers in units of 2^-e (e chosen so each fits in int32) and
summed in int64, so every path, chunking and thread count returns the same bits for the same
mask.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from moe2_cli.gating.box_bound import GatedBound
from moe2_cli.gating.kernels import TINY, AllMasks, Batch, few_columns_total, one_mask_total, softmax_units, top_k_sums
from moe2_cli.gating.model import floored, restrict
from moe2_cli.gating.tables import byte_or, byte_sum
from moe2_cli.objective import Objective
from moe2_cli.problem import WORD_EXPERTS, Instance, as_masks, mask_bytes, masks_to_bool, popcount

METRICS = ("accuracy", "neg-cross-entropy")
MAX_ALL_MASKS = 26  # 2^26 values are 512 MB
_CHUNK_ELEMENTS = 1 << 17  # masks x queries per chunk: temporaries stay in a core's L2 cache (larger
# chunks measured 5x slower when another process shared the last-level cache)
_MAX_THREADS = 2
_SCAN_ELEMENTS = 1 << 13  # masks x queries up to which k >= 3 batches scan the gate order (measured
# faster up to 8-16 masks of 1,000 queries)
_BATCH_MASKS = 2048  # k >= 3 batches from which one pass per query wins (measured: even at 1,000-2,000)


def share_weights(category: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per-query weights: a category's traffic share split evenly over its queries,
    renormalised over the categories that have queries. They sum to 1."""
    counts = np.bincount(category, minlength=len(shares)).astype(float)
    per_cat = np.where(counts > 0, np.asarray(shares, dtype=float) / np.maximum(counts, 1), 0.0)
    weights = per_cat[category]
    return weights / weights.sum()


def _value(metric: str, mixed: np.ndarray) -> np.ndarray:
    """A query's value from its mixture (expected score, or log chance of the right answer)."""
    return mixed if metric == "accuracy" else np.log(mixed)


def gate_value(logits, scores, weights, k: int, mask: int | None = None, *, metric: str = "accuracy",
               floor: float = 1e-3) -> float:
    """F of one selection (all experts when ``mask`` is None), straight from the definition:
    the weighted mean over queries of the metric of ``sum_n w_n(x) p_n``."""
    p = scores if metric == "accuracy" else floored(scores, floor)
    if mask == 0:
        mixed = np.full(len(p), 0.0 if metric == "accuracy" else floor)
    else:
        mixed = (restrict(logits, k, mask) * p).sum(axis=1)
    return float(weights @ _value(metric, mixed))


class GatedObjective(Objective):
    """F over expert bit masks for one trained gate on one held-out set.

    The gate scores *columns*: one per distinct LLM, since experts hosting the same LLM give the
    same answers. ``expert_columns[i]`` is expert i's column (default: one column per expert);
    a selection offers the gate the columns of its experts, so a second copy of an LLM neither
    takes a top-k slot nor changes F. ``logits`` (Q, M) are the gate's scores h(x) for the
    held-out queries, ``scores`` (Q, M) the columns' scores, ``weights`` (Q,) the query weights
    (see :func:`share_weights`). ``metric`` is "accuracy" (expected accuracy) or
    "neg-cross-entropy" (mean log chance of the right answer, scores floored at ``floor``);
    F(empty) is 0 or log(floor).
    """

    name = "gated-ensemble"

    def __init__(self, instance: Instance, logits, scores, weights, *, expert_columns=None,
                 metric: str = "accuracy", floor: float = 1e-3, threads: int | None = None):
        super().__init__(instance)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)} (got {metric!r})")
        self.logits = np.asarray(logits, dtype=float)
        self.scores = np.asarray(scores, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        n = instance.n_experts
        columns = np.arange(n) if expert_columns is None else np.asarray(expert_columns, dtype=np.int64)
        self.n_columns = self.logits.shape[1]
        if (self.logits.shape != self.scores.shape or self.weights.shape != (len(self.logits),)
                or columns.shape != (n,) or columns.min() < 0 or columns.max() >= self.n_columns):
            raise ValueError("logits and scores must have shape (Q, columns), weights (Q,), expert_columns (experts,)")
        if self.n_columns > WORD_EXPERTS:  # column masks are int64 in every kernel
            raise ValueError(f"the gate scores at most {WORD_EXPERTS} distinct LLMs (got {self.n_columns} columns)")
        self.expert_columns = columns
        self.metric, self.floor, self.k = metric, floor, instance.top_k
        self.threads = threads or min(_MAX_THREADS, os.cpu_count() or 1)
        self.order = np.argsort(-self.logits, axis=1, kind="stable")  # stable: ties to the lowest index
        self.rank = np.argsort(self.order, axis=1).astype(np.int64)
        # Units of 2^-exponent: the largest possible query value still fits in int32.
        bound = self.weights.max(initial=0.0) * (1.0 if metric == "accuracy" else max(1.0, -math.log(floor)))
        self.exponent = max(0, min(52, math.floor(math.log2((2**31 - 1) / bound)))) if bound > 0 else 52
        self._column_bytes = None if np.array_equal(columns, np.arange(n)) else _column_bytes(columns)
        self._fast = _RankTables(self, self._pair_values()) if self.k <= 2 else None
        self._sums = _SoftmaxSums(self) if self._fast is None else None
        self._all_columns: np.ndarray | None = None
        self._bound: GatedBound | None = None

    # ------------------------------------------------------------ the contract's optional parts

    @property
    def bound_proof(self) -> str:
        return "gated box bound"  # valid although F is not monotone (see moe2_cli.gating.box_bound)

    def box_bound(self, low: object, high: object) -> np.ndarray:
        return self._box().bound(low, high)

    def box_bound_without(self, low: int, high: int, removed: object) -> np.ndarray:
        return self._box().bound_without(low, high, removed)

    def expert_classes(self) -> np.ndarray:
        """Each expert's column: F depends only on the LLMs a selection offers the gate."""
        return self.expert_columns

    def _box(self) -> GatedBound:
        # Built on first use and kept: a frontier solves the same F at many budgets.
        if self._bound is None:
            self._bound = GatedBound(self)
        return self._bound

    def column_masks(self, masks) -> np.ndarray:
        """Expert masks to column masks: the columns (LLMs) the selected experts host."""
        masks = as_masks(masks, self.instance.n_experts)
        if self._column_bytes is None:
            return masks
        raw = mask_bytes(masks, self.instance.n_experts)
        out = np.zeros(raw.shape[0], dtype=np.int64)
        for j, table in enumerate(self._column_bytes):
            out |= table[raw[:, j]]
        return out.reshape(masks.shape)

    def _units(self, values: np.ndarray) -> np.ndarray:
        """Weighted query values as integers in units of 2^-exponent."""
        return np.rint(np.ldexp(values, self.exponent))

    def _to_float(self, totals: np.ndarray) -> np.ndarray:
        return np.ldexp(totals.astype(float), -self.exponent)

    # ------------------------------------------------------------ evaluation

    def _compute(self, masks: np.ndarray) -> np.ndarray:
        columns = self.column_masks(masks)
        m = self.n_columns
        if self._all_columns is None and m <= MAX_ALL_MASKS and columns.size * 4 >= (1 << m):
            self._all_columns = self._every_column_mask()  # cheaper than a quarter of them one by one
        if self._all_columns is not None:
            return self._all_columns[columns]
        return self._to_float(self._per_mask(columns))

    def evaluate(self, masks) -> np.ndarray:
        """F of each mask through the per-mask path: no cache, no all-masks table."""
        columns = self.column_masks(masks).reshape(-1)
        return self._to_float(self._per_mask(columns))

    def evaluate_masks_outer(self, masks) -> np.ndarray:
        """F of each mask through the masks-outer rank tables at any batch size (k >= 3; k <= 2
        has one path): what the query-outer kernels replace, kept as their reference. The same
        bits as :meth:`evaluate` and :meth:`all_values`."""
        columns = self.column_masks(np.asarray(masks, dtype=np.int64).reshape(-1))
        if self._sums is None:
            return self._to_float(self._per_mask(columns))
        return self._to_float(self._sums.evaluate(columns, self._sums_chunked))

    def evaluate_generic(self, masks) -> np.ndarray:
        """F of each mask through the plain vectorised definition (any k): the reference the
        fast paths are checked and benchmarked against."""
        columns = self.column_masks(masks).reshape(-1)
        return self._to_float(self._chunked(self._generic, columns, per_mask=len(self.logits) * self.n_columns))

    def all_values(self) -> np.ndarray:
        """F of every expert mask 0 .. 2^N - 1, indexed by mask (N <= 26)."""
        n = self.instance.n_experts
        if n > MAX_ALL_MASKS:
            raise ValueError(f"all masks of {n} experts do not fit in memory (at most {MAX_ALL_MASKS})")
        if self._all_columns is None:
            self._all_columns = self._every_column_mask()
        if self._column_bytes is None:
            return self._all_columns
        return self._all_columns[self.column_masks(np.arange(1 << n, dtype=np.int64))]

    def _every_column_mask(self) -> np.ndarray:
        if self._fast is not None:
            totals = self._fast.all_masks()
        else:
            assert self._sums is not None  # built whenever the k <= 2 tables are not
            totals = self._sums.all_masks(self.threads, self._sums_chunked)
        values = self._to_float(totals)
        values.setflags(write=False)
        return values

    def _per_mask(self, columns: np.ndarray) -> np.ndarray:
        """Integer-scaled F of column masks through the fast path for this k."""
        if self._fast is not None:
            return self._chunked(self._fast.evaluate, columns)
        assert self._sums is not None  # built whenever the k <= 2 tables are not
        if columns.size * len(self.logits) <= _SCAN_ELEMENTS:
            return self._sums.scan(columns)
        if columns.size >= _BATCH_MASKS:
            return self._sums.batch(columns, self._sums_chunked, self.threads)
        return self._sums.evaluate(columns, self._sums_chunked)

    def _sums_chunked(self, kernel, masks: np.ndarray) -> np.ndarray:
        # Complex (mask, query) temporaries: half as many per chunk keeps them in cache.
        return self._chunked(kernel, masks, per_mask=2 * len(self.logits))

    def _chunked(self, kernel, masks: np.ndarray, per_mask: int | None = None) -> np.ndarray:
        size = max(1, _CHUNK_ELEMENTS // (per_mask or len(self.logits)))
        chunks = [masks[i:i + size] for i in range(0, masks.size, size)]
        if len(chunks) < 8 * self.threads:  # starting threads costs more than a few chunks
            parts = [kernel(c) for c in chunks]
        else:
            # numpy releases the GIL in take, min/max and sum, so threads use every core.
            with ThreadPoolExecutor(self.threads) as pool:
                parts = list(pool.map(kernel, chunks))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _generic(self, masks: np.ndarray) -> np.ndarray:
        """Any k: per (column mask, query), the first k columns of S in gate order, softmax-mixed."""
        chosen = masks_to_bool(masks, self.n_columns)[:, self.order]  # (B, Q, M) in gate order
        keep = chosen & (np.cumsum(chosen, axis=2) <= self.k)
        sorted_logits = np.take_along_axis(self.logits, self.order, axis=1)
        sorted_scores = np.take_along_axis(self.scores_for_metric(), self.order, axis=1)
        z = np.where(keep, sorted_logits[None], -np.inf)
        top = np.max(z, axis=2, keepdims=True)
        w = np.exp(z - np.where(np.isfinite(top), top, 0.0))
        total = w.sum(axis=2)
        mixed = (w * sorted_scores[None]).sum(axis=2) / np.where(total > 0, total, 1.0)
        empty = 0.0 if self.metric == "accuracy" else self.floor
        values = _value(self.metric, np.where(total > 0, mixed, empty))
        return self._units(values * self.weights[None]).astype(np.int64).sum(axis=1)

    def scores_for_metric(self) -> np.ndarray:
        return self.scores if self.metric == "accuracy" else floored(self.scores, self.floor)

    def _pair_values(self) -> np.ndarray:
        """(Q, M+1, M+1) int32: a query's weighted value when the best two columns of S have
        ranks r1 < r2; column M means S has one, [M, M] that S is empty. For k = 1 only r1
        counts."""
        m = self.n_columns
        logit = np.take_along_axis(self.logits, self.order, axis=1)
        score = np.take_along_axis(self.scores_for_metric(), self.order, axis=1)
        table = np.empty((len(logit), m + 1, m + 1))
        if self.k == 1:
            table[:, :m, :] = score[:, :, None]
        else:
            # w1 = softmax weight of the better-ranked column of the pair (r1, r2): the logistic
            # function of the score difference, written with tanh so it cannot overflow.
            w1 = 0.5 * (1.0 + np.tanh(0.5 * (logit[:, :, None] - logit[:, None, :])))
            table[:, :m, :m] = w1 * score[:, :, None] + (1.0 - w1) * score[:, None, :]
            table[:, :m, m] = score
        table[:, m, :] = 0.0 if self.metric == "accuracy" else self.floor
        return self._units(_value(self.metric, table) * self.weights[:, None, None]).astype(np.int32)

    # ------------------------------------------------------------ context

    def reference_values(self, masks) -> np.ndarray:
        """F computed the plain way, mask by mask, through the gate's own :func:`restrict`."""
        columns = self.column_masks(masks).reshape(-1)
        return np.array([gate_value(self.logits, self.scores, self.weights, self.k, mask, metric=self.metric,
                                    floor=self.floor) for mask in columns.tolist()])

    def references(self, mask: int) -> dict[str, float]:
        """For context: the gate's expected accuracy in S, the oracle (best expert of S per query)
        and the best single expert of S, all with the same query weights."""
        column_mask = int(self.column_masks(np.array([mask]))[0])
        chosen = masks_to_bool(np.array([column_mask]), self.n_columns)[0]
        if not chosen.any():
            return {"gate": 0.0, "oracle": 0.0, "best_single": 0.0}
        gate = gate_value(self.logits, self.scores, self.weights, self.k, column_mask)
        return {"gate": gate, "oracle": float(self.weights @ self.scores[:, chosen].max(axis=1)),
                "best_single": float((self.weights @ self.scores[:, chosen]).max())}

    def best_single_expert(self, mask: int) -> int:
        """The expert of S whose LLM has the best weighted mean score (lowest index on ties)."""
        chosen = masks_to_bool(np.array([mask]), self.instance.n_experts)[0]
        means = np.where(chosen, (self.weights @ self.scores)[self.expert_columns], -np.inf)
        return int(np.argmax(means))


def _column_bytes(columns: np.ndarray) -> list[np.ndarray]:
    """Per byte of an expert mask: the column mask of each of its 256 values."""
    tables = []
    for start in range(0, len(columns), 8):
        bits = ((np.arange(256)[:, None] >> np.arange(len(columns[start:start + 8]))) & 1).astype(bool)
        tables.append(np.bitwise_or.reduce(np.where(bits, np.int64(1) << columns[start:start + 8], 0), axis=1))
    return tables


class _RankTables:
    """The k <= 2 fast path: the two best ranks of S per query, merged byte by byte."""

    def __init__(self, objective: GatedObjective, pair: np.ndarray):
        self.n = objective.n_columns
        q = len(pair)
        self.pair = pair.reshape(-1)
        self.row_offset = (np.arange(q) * (self.n + 1) ** 2).astype(np.int32 if q * (self.n + 1) ** 2 < 2**31
                                                                      else np.int64)
        self.first, self.second = [], []
        for start in range(0, self.n, 8):
            first, second = _byte_ranks(objective.rank[:, start:start + 8], self.n)
            self.first.append(first)
            self.second.append(second)

    def evaluate(self, masks: np.ndarray) -> np.ndarray:
        """Integer-scaled F of each mask."""
        low = masks & 255
        first, second = self.first[0][low], self.second[0][low]
        for j in range(1, len(self.first)):
            byte = (masks >> (8 * j)) & 255
            first, second = _merge(first, second, self.first[j][byte], self.second[j][byte])
        return self._total(first, second)

    def all_masks(self) -> np.ndarray:
        """Integer-scaled F of every mask: each value of the bits above the lowest byte merges
        with the whole low-byte table at once."""
        low_bits = min(8, self.n)
        first_low, second_low = self.first[0][: 1 << low_bits], self.second[0][: 1 << low_bits]
        out = np.empty((1 << (self.n - low_bits), 1 << low_bits), dtype=np.int64)
        for high in range(out.shape[0]):
            first, second = first_low, second_low
            for j in range(1, len(self.first)):
                byte = (high >> (8 * (j - 1))) & 255
                first, second = _merge(first, second, self.first[j][byte][None], self.second[j][byte][None])
            out[high] = self._total(first, second)
        return out.reshape(-1)  # row-major (high, low) is mask order

    def _total(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        index = first.astype(self.row_offset.dtype)
        index *= self.n + 1
        index += second
        index += self.row_offset
        return self.pair.take(index).sum(axis=-1, dtype=np.int64)


class _SoftmaxSums:
    """The k >= 3 path: S's top k per query from rank-bit tables, softmax sums from per-byte
    partial sums (see the module docstring)."""

    def __init__(self, objective: GatedObjective):
        self.objective = objective
        self.k = objective.k
        q, m = objective.logits.shape
        order, rank = objective.order, objective.rank
        sorted_logits = np.take_along_axis(objective.logits, order, axis=1)
        sorted_scores = np.take_along_axis(objective.scores_for_metric(), order, axis=1)
        # Terms relative to the query's best logit: at most 1, and 1 for its best column.
        ee = np.exp(sorted_logits - sorted_logits[:, :1])
        es = ee * sorted_scores
        bits = np.left_shift(np.uint64(1), rank.astype(np.uint64)).astype("<u8")
        # One (rank byte, byte value, query) array for the compiled scan; per rank byte views of it.
        self.rank_table = np.stack([byte_or(bits[:, s:s + 8]) for s in range(0, m, 8)]).view(np.int64)
        self.rank_bits = list(self.rank_table.view("<u8"))
        # Per rank byte, (Q, 256) flattened: sum e^h p + i sum e^h, one gather for both sums.
        # One flat array (rank byte, query, byte value): a few masks' terms of every rank byte in one gather.
        self.all_sums = np.concatenate([byte_sum(es[:, s:s + 8] + 1j * ee[:, s:s + 8]) for s in range(0, m, 8)])
        self.sums = np.split(self.all_sums, len(self.rank_bits))
        self.sum_table = self.all_sums.reshape(len(self.rank_bits), q, 256)
        self.row_start = np.arange(q, dtype=np.intp) * 256
        self.byte_start = self.row_start + (np.arange(len(self.sums), dtype=np.intp) * (q * 256))[:, None]
        self.unit_weights = np.ldexp(objective.weights, objective.exponent)
        first = _FIRST_BITS[(min(self.k, 8) << 8) + np.arange(256)]
        self.first_sums = self.sums[0].reshape(q, 256)[:, first].reshape(-1)
        self.first_left = self.k - _POPCOUNT[first]
        # Column order, for masks with at most k columns: (256, Q) per byte of the column mask.
        by_column = np.take_along_axis(es + 1j * ee, rank, axis=1)
        self.column_table = np.stack([byte_sum(by_column[:, s:s + 8]).reshape(q, 256).T for s in range(0, m, 8)])
        self.column_sums = list(self.column_table)
        self.n = m
        self._batch: Batch | None = None  # per-query tables for large batches, built on first use

    def evaluate(self, masks: np.ndarray, chunked) -> np.ndarray:
        """Integer-scaled F of each column mask; ``chunked(kernel, masks)`` runs the byte path."""
        small = popcount(masks) <= self.k
        out = np.empty(masks.size, dtype=np.int64)
        if small.any():
            out[small] = chunked(self._products, masks[small])
        if not small.all():
            out[~small] = chunked(self._bytes, masks[~small])
        return out

    def scan(self, masks: np.ndarray) -> np.ndarray:
        """Integer-scaled F of a few column masks: per query, a scan of the gate order for the
        first k columns of S (see :mod:`moe2_cli.gating.kernels`)."""
        if masks.size == 1:  # the common single mask, without splitting
            mask, obj = int(masks[0]), self.objective
            total = (one_mask_total(self, mask, obj.metric) if mask.bit_count() > self.k
                     else few_columns_total(self, mask, obj.metric))
            if total is not None:
                return np.array([total], dtype=np.int64)
        small = popcount(masks) <= self.k
        out = np.empty(masks.size, dtype=np.int64)
        if small.any():
            out[small] = self._products(masks[small])
        if not small.all():
            wide = masks[~small]
            out[~small] = self._finish_quickly(wide, *top_k_sums(self, wide))
        return out

    def batch(self, masks: np.ndarray, chunked, threads: int) -> np.ndarray:
        """Integer-scaled F of many column masks: queries outer for masks of more than k
        columns (see :class:`moe2_cli.gating.kernels.Batch`), the per-byte products for the rest."""
        small = popcount(masks) <= self.k
        out = np.empty(masks.size, dtype=np.int64)
        if small.any():
            out[small] = chunked(self._products, masks[small])
        if not small.all():
            wide = masks[~small]
            if self._batch is None:
                self._batch = Batch(self, self.objective.metric, self.objective.floor, threads)
            totals, lost = self._batch.totals(wide)
            if lost is not None:
                totals[lost] = self.objective._generic(wide[lost])
            out[~small] = totals
        return out

    def all_masks(self, threads: int, chunked) -> np.ndarray:
        """Integer-scaled F of every column mask: the query-outer kernel for masks of more than
        k columns, the per-byte products for the rest."""
        masks = np.arange(1 << self.n, dtype=np.int64)
        small = popcount(masks) <= self.k
        if 4 * np.count_nonzero(~small) < masks.size:  # mostly small masks: one pass per query would be wasted
            return self.batch(masks, chunked, threads)
        obj = self.objective
        out, lost = AllMasks(self, obj.metric, obj.floor, threads).totals()
        out[small] = chunked(self._products, masks[small])
        if lost is not None:
            rows = np.flatnonzero(lost & ~small)
            out[rows] = obj._generic(masks[rows])
        return out

    def _products(self, masks: np.ndarray) -> np.ndarray:
        """All of S is in the top k: each sum is a product of S's indicator with a (M, Q)
        matrix, taken as one row of a per-byte table per byte of S (a fixed order of additions,
        so the same mask always gets the same bits, unlike a threaded BLAS product)."""
        total = self.column_sums[0][masks & 255]
        for j in range(1, len(self.column_sums)):
            total += self.column_sums[j][(masks >> (8 * j)) & 255]
        return self._finish(masks, total.real, total.imag)

    def _bytes(self, masks: np.ndarray) -> np.ndarray:
        return self._finish(masks, *self._byte_sums(masks))

    def _byte_sums(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ranked = self.rank_bits[0][masks & 255]  # (B, Q): S's columns as bits at their gate ranks
        for j in range(1, len(self.rank_bits)):
            ranked |= self.rank_bits[j][(masks >> (8 * j)) & 255]
        shape = ranked.shape
        rank_bytes = ranked.reshape(-1).view(np.uint8).reshape(-1, 8)  # little-endian: byte j = ranks 8j..8j+7
        starts = np.tile(self.row_start, shape[0])
        # First rank byte: all k slots are open, so the tables are indexed by the byte alone.
        byte = rank_bytes[:, 0]
        total = self.first_sums.take(starts + byte)
        left = self.first_left.take(byte)  # top-k slots still open per (mask, query)
        active = None  # the (mask, query) pairs still open once few are; None while most are
        for j in range(1, len(self.sums)):
            still = np.count_nonzero(left)
            if still == 0:
                break  # every top k is complete
            if 2 * still < left.size:  # carry on with the open pairs alone
                keep = np.flatnonzero(left)
                active = keep if active is None else active[keep]
                left, starts = left[keep], starts[keep]
            byte = rank_bytes[:, j] if active is None else rank_bytes[active, j]
            fits = left if self.k <= 8 else np.minimum(left, 8)
            kept = _FIRST_BITS.take((fits << 8) | byte)  # the byte's best ranks that still fit
            terms = self.sums[j].take(starts + kept)
            if active is None:
                total += terms
            else:
                total[active] += terms
            left -= _POPCOUNT.take(kept)
        total = total.reshape(shape)
        return total.real, total.imag

    def _finish_quickly(self, masks: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """:meth:`_finish` in fewer array operations when no denominator underflows (the usual
        case); the same bits."""
        if den.min(initial=np.inf) < TINY:
            return self._finish(masks, num, den)
        obj = self.objective
        values = softmax_units(num, den, self.unit_weights, obj.metric, obj.floor, positive=True)
        return values.sum(axis=1).astype(np.int64)

    def _finish(self, masks: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        obj = self.objective
        values = softmax_units(num, den, self.unit_weights, obj.metric, obj.floor)
        totals = values.sum(axis=1).astype(np.int64)  # integers below 2^53: the float sum is exact
        lost = den < TINY
        if lost.any():
            # Every top-k logit of some query is ~700 below its best: the tables underflow there.
            rows = np.flatnonzero(lost.any(axis=1) & (masks != 0))
            totals[rows] = obj._generic(masks[rows])
        return totals


_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.intp)


def _first_bits() -> np.ndarray:
    """(9 * 256,) intp, [(r << 8) | byte]: the r lowest set bits of byte."""
    table = np.zeros((9, 256), dtype=np.intp)
    for byte in range(256):
        bits = [b for b in range(8) if byte >> b & 1]
        for r in range(9):
            table[r, byte] = sum(1 << b for b in bits[:r])
    return table.reshape(-1)


_FIRST_BITS = _first_bits()


def _merge(first_a, second_a, first_b, second_b):
    """The two smallest of two sorted rank pairs: uint8 min/max, no sorting."""
    return np.minimum(first_a, first_b), np.minimum(np.maximum(first_a, first_b), np.minimum(second_a, second_b))


def _byte_ranks(rank: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For up to 8 experts' ranks (Q, h): the best and second-best rank among the experts in
    each byte value, shape (256, Q) uint8 each; n marks "none"."""
    h = rank.shape[1]
    bits = ((np.arange(256)[:, None] >> np.arange(h)) & 1).astype(bool)
    columns = rank.astype(np.uint8).T  # ranks < 62 fit in a byte
    first = np.full((256, rank.shape[0]), n, dtype=np.uint8)
    second = first.copy()
    # One expert at a time with uint8 min/max: a fraction of the cost of sorting a (256, Q, h) array.
    for b in range(h):
        first, second = _merge(first, second, np.where(bits[:, b, None], columns[b], np.uint8(n)), np.uint8(n))
    return first, second


@dataclass(frozen=True)
class Monotonicity:
    """How often adding an expert lowers F: pairs (S, S + {i}) checked, drops found, their size,
    and (when every mask was evaluated) the largest gap between F and its monotone envelope
    max_{S' in S} F(S'), which bounds what a solver trusting monotonicity can lose."""

    pairs: int
    exhaustive: bool
    violations: int
    max_drop: float
    mean_drop: float
    envelope_gap: float | None

    @property
    def rate(self) -> float:
        return self.violations / self.pairs if self.pairs else 0.0


def monotonicity(objective: GatedObjective, rng: np.random.Generator, *, samples: int = 20_000,
                 exhaustive_limit: int = 20, tolerance: float = 1e-12) -> Monotonicity:
    """Every pair (S, S + {i}) when N <= ``exhaustive_limit``, else ``samples`` random pairs."""
    n = objective.instance.n_experts
    if n <= exhaustive_limit:
        return _all_pairs(objective.all_values(), n, tolerance)
    base = rng.integers(0, 1 << n, size=samples, dtype=np.int64)
    bit = rng.integers(0, n, size=samples, dtype=np.int64)
    added = base | (np.int64(1) << bit)
    fresh = added != base
    drops = (objective(base) - objective(added))[fresh]
    return _summary(drops, tolerance, exhaustive=False, envelope_gap=None)


def _all_pairs(values: np.ndarray, n: int, tolerance: float) -> Monotonicity:
    drops, envelope = [], values.copy()
    for i in range(n):
        # Viewed as (rest, bit i, lower bits): [:, 0] lacks expert i, [:, 1] has it.
        pairs = values.reshape(-1, 2, 1 << i)
        drops.append((pairs[:, 0] - pairs[:, 1]).reshape(-1))
        env = envelope.reshape(-1, 2, 1 << i)
        np.maximum(env[:, 1], env[:, 0], out=env[:, 1])
    return _summary(np.concatenate(drops), tolerance, exhaustive=True,
                    envelope_gap=float((envelope - values).max()))


def _summary(drops: np.ndarray, tolerance: float, *, exhaustive: bool, envelope_gap: float | None) -> Monotonicity:
    bad = drops[drops > tolerance]
    return Monotonicity(pairs=int(drops.size), exhaustive=exhaustive, violations=int(bad.size),
                        max_drop=float(bad.max()) if bad.size else 0.0,
                        mean_drop=float(bad.mean()) if bad.size else 0.0, envelope_gap=envelope_gap)


class MonotoneEnvelope(Objective):
    """F-hat(S) = max over S' in S of F(S'): monotone by construction. Feasible selections form a
    down-set (dropping experts never breaks a budget), so F-hat and F have the same feasible
    maximum, reached by :meth:`deployable` of F-hat's maximiser. Needs every mask (N <= 26)."""

    monotone = True  # by construction: solvers need not check their proofs against it
    monotone_proof = "monotone envelope of F"  # named in a solver's notes
    envelope = True
    name = "gated-ensemble-envelope"

    def __init__(self, inner: GatedObjective):
        super().__init__(inner.instance)
        self.inner = inner
        values = inner.all_values()
        self._values = values.copy()
        self._argmax = np.arange(values.size, dtype=np.int64)
        for i in range(inner.instance.n_experts):
            # Viewed as (rest, bit i, lower bits): a set with expert i also sees its subsets without it.
            env, arg = self._values.reshape(-1, 2, 1 << i), self._argmax.reshape(-1, 2, 1 << i)
            better = env[:, 0] > env[:, 1]  # strict: ties keep the larger set's own choice
            env[:, 1] = np.where(better, env[:, 0], env[:, 1])
            arg[:, 1] = np.where(better, arg[:, 0], arg[:, 1])

    def _compute(self, masks: np.ndarray) -> np.ndarray:
        return self._values[masks]

    def deployable(self, mask: int) -> int:
        """A subset of ``mask`` whose F equals F-hat(mask); it fits whenever ``mask`` does."""
        return int(self._argmax[mask])

    def references(self, mask: int) -> dict[str, float]:
        return self.inner.references(self.deployable(mask))
