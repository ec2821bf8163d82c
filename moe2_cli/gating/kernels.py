"""Query-outer kernels for F at k >= 3: the all-masks table, large batches, and a few masks.

All three compute exactly what the masks-outer rank tables of :mod:`moe2_cli.gating.ensemble`
compute, in another order. A query's value depends on a selection S only through T, the best k of S in
the query's gate order, and its two softmax sums are the per-rank-byte table entries of T added
byte by byte, from the lowest rank byte up. Bytes of T without a bit add the entry of the empty
byte, 0, which leaves a sum unchanged, so any way of finding T gives the same sums, the same
rounded query value, and (query values being integers) the same F, bit for bit.

- All masks: in rank space (bit r = the column ranked r) the best k of a mask depend on no
  query, so every rank mask's k-subset index is tabled once (``index``, colex order). Per query,
  the value of each k-subset (``units``, a few thousand entries, cache-resident) is computed
  once, and the pass over all 2^M masks is two gathers: rank mask -> subset index -> value.
  Masks of at most k columns are not handled here (their sums come in column order).
- Large batches: per query, its rows of the rank-bit and softmax-sum tables (a few kB) serve a
  block of masks while they sit in L1, instead of every mask gathering from all queries' rows.
- A few masks: per query, the selection's columns as bits at their gate ranks (the rank-bit
  tables), the k lowest kept by clearing the lowest set bit k times, and every rank byte's
  entries in one gather: a few dozen operations over (masks, queries), where the masks-outer
  path needs about twice as many.
- One mask, once a process has asked for many: the same scan compiled by numba (the ``fast``
  extra), a few loops over the queries instead of a few dozen array operations; numpy's scan
  stays the reference, and both give the same bits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

_BATCH_BLOCK = 8192  # masks per step of a batch: a step's arrays stay in L2 across the queries
_BLOCK_ROWS = 256  # rows of 256 masks per step: the step's index, subset and value arrays stay in L2
_SUBSET_CHUNK = 1 << 20  # rank masks scanned at a time while tabling subsets
TINY = 1e-280  # below this a softmax denominator may have lost its terms to underflow
_BYTE_COUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def softmax_units(num: np.ndarray, den: np.ndarray, unit_weights, metric: str, floor: float, *,
                  positive: bool = False) -> np.ndarray:
    """Each query's rounded value in units of 2^-e from its two softmax sums (float, integral);
    ``positive``: the caller knows every denominator is. Scaling by a power of two commutes with
    rounding: the same bits as rounding the weighted value."""
    if positive:
        mixed = num / den
    else:
        empty = 0.0 if metric == "accuracy" else floor
        mixed = np.divide(num, den, out=np.full(num.shape, empty), where=den > 0)
    values = mixed if metric == "accuracy" else np.log(mixed)
    values *= unit_weights
    np.rint(values, out=values)
    return values


def bit_count(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint32 value, through a byte table (numpy before 2.0 has no bitwise_count)."""
    return _BYTE_COUNT[values.astype("<u4").view(np.uint8).reshape(-1, 4)].sum(axis=1, dtype=np.int64)


def lowest_bits(values: np.ndarray, k: int) -> np.ndarray:
    """The k lowest set bits of each non-negative int64 value (all of them when it has fewer)."""
    step = values - 1
    rest = values & step
    for _ in range(k - 1):
        np.subtract(rest, 1, out=step)
        rest &= step
    rest ^= values
    return rest


class RankSubsets:
    """Every k-subset of m ranks as a rank mask, in increasing (colex) order, and for every rank
    mask with at least k bits the index of its k lowest bits (0 for smaller masks)."""

    def __init__(self, m: int, k: int):
        self.m, self.k = m, k
        binomial = np.zeros((m + 1, k + 1), dtype=np.int64)  # binomial[p, i] = C(p, i)
        binomial[:, 0] = 1
        for p in range(1, m + 1):
            binomial[p, 1:] = binomial[p - 1, 1:] + binomial[p - 1, :-1]
        self.count = int(binomial[m, k])
        chunks = [np.arange(s, min(s + _SUBSET_CHUNK, 1 << m), dtype=np.uint32)
                  for s in range(0, 1 << m, _SUBSET_CHUNK)]
        self.masks = np.concatenate([c[bit_count(c) == k] for c in chunks])
        dtype = np.int16 if self.count <= np.iinfo(np.int16).max else np.int32
        self.index = np.concatenate([self._colex(c, binomial).astype(dtype) for c in chunks])

    def _colex(self, masks: np.ndarray, binomial: np.ndarray) -> np.ndarray:
        """The colex rank of each mask's k lowest bits: sum over its i-th lowest bit p of C(p, i + 1)."""
        rest = masks.astype(np.int64)
        index = np.zeros(rest.size, dtype=np.int64)
        for i in range(self.k):
            low = rest & -rest
            position = bit_count(np.maximum(low - 1, 0))
            index += np.where(low > 0, binomial[position, i + 1], 0)
            rest ^= low
        return np.where(bit_count(masks) >= self.k, index, 0)

    def byte_index(self, row_start) -> list[np.ndarray]:
        """Per rank byte j, the flat table index ``row_start + byte j of each subset``, shape
        (queries, subsets)."""
        count = -(-self.m // 8)
        subset_bytes = self.masks.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :count].astype(np.intp)
        return [np.asarray(row_start)[:, None] + subset_bytes[None, :, j] for j in range(count)]


class AllMasks:
    """Integer-scaled F of every column mask with more than k columns, queries outer."""

    def __init__(self, sums, metric: str, floor: float, threads: int):
        self.sums, self.metric, self.floor, self.threads = sums, metric, floor, threads
        self.subsets = RankSubsets(sums.n, sums.k)
        self.low_bits = min(8, sums.n)

    def totals(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(2^M,) int64 totals (meaningless for masks of at most k columns), and a boolean mask of
        the masks whose tables underflowed in some query (None when none did)."""
        queries = len(self.sums.row_start)
        parts = np.array_split(np.arange(queries), max(1, min(self.threads, queries)))
        if len(parts) == 1:
            results = [self._part(parts[0])]
        else:
            # numpy releases the GIL in take, bitwise_or and add, so each thread keeps a core busy.
            with ThreadPoolExecutor(len(parts)) as pool:
                results = list(pool.map(self._part, parts))
        total = results[0][0]
        lost = results[0][1]
        for part_total, part_lost in results[1:]:
            total += part_total
            if part_lost is not None:
                lost = part_lost if lost is None else lost | part_lost
        return total.reshape(-1), None if lost is None else lost.reshape(-1)

    def _part(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = 1 << (self.sums.n - self.low_bits)
        total = np.zeros((rows, 1 << self.low_bits), dtype=np.int64)
        lost: np.ndarray | None = None
        step = min(rows, _BLOCK_ROWS)
        buffers = (np.empty((step, total.shape[1]), dtype=np.intp),
                   np.empty((step, total.shape[1]), dtype=self.subsets.index.dtype),
                   np.empty((step, total.shape[1]), dtype=np.int32))
        per_block = max(1, (1 << 16) // self.subsets.count)
        for start in range(0, queries.size, per_block):
            block = queries[start:start + per_block]
            units, underflow = self._units(block)
            for q, values, fell in zip(block.tolist(), units, underflow):
                high, low = self._rank_bits(q)
                self._accumulate(total, high, low, values, buffers)
                if fell.any():  # rare: only queries whose far-down logits underflow pay for it
                    lost = np.zeros(total.shape, dtype=bool) if lost is None else lost
                    self._mark(lost, high, low, fell)
        return total, lost

    def _units(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(queries, subsets) int32 value of each k-subset, and where its denominator underflowed."""
        sums = self.sums
        indices = self.subsets.byte_index(sums.row_start[queries])
        total = sums.sums[0].take(indices[0])
        for j in range(1, len(indices)):
            total += sums.sums[j].take(indices[j])
        values = softmax_units(total.real, total.imag, sums.unit_weights[queries, None], self.metric, self.floor,
                               positive=total.imag.min(initial=np.inf) > 0)
        return values.astype(np.int32), total.imag < TINY

    def _rank_bits(self, q: int) -> tuple[np.ndarray, np.ndarray]:
        """Query q's rank mask of every value of the bits above the lowest byte, and of the lowest byte."""
        tables = self.sums.rank_bits
        high_masks = np.arange(1 << (self.sums.n - self.low_bits), dtype=np.int64) << self.low_bits
        high = np.zeros(high_masks.size, dtype=np.intp)
        for j in range(1, len(tables)):
            high |= tables[j][(high_masks >> (8 * j)) & 255, q].astype(np.intp)
        return high, tables[0][: 1 << self.low_bits, q].astype(np.intp)

    def _accumulate(self, total, high, low, values, buffers) -> None:
        ranked, subset, value = buffers
        index = self.subsets.index
        for row in range(0, high.size, ranked.shape[0]):
            end = min(row + ranked.shape[0], high.size)
            n = end - row
            np.bitwise_or(high[row:end, None], low[None, :], out=ranked[:n])
            index.take(ranked[:n], out=subset[:n], mode="clip")  # clip: valid anyway, and unbuffered
            values.take(subset[:n], out=value[:n], mode="clip")
            total[row:end] += value[:n]

    def _mark(self, lost, high, low, fell) -> None:
        ranked = (high[:, None] | low[None, :]).reshape(-1)
        lost |= fell[self.subsets.index[ranked]].reshape(lost.shape)


class Batch:
    """Integer-scaled F of a batch of column masks of more than k columns, queries outer: per
    query, its rank-bit and softmax-sum tables (a few kB) serve a block of masks at a time."""

    def __init__(self, tables, metric: str, floor: float, threads: int):
        self.tables, self.metric, self.floor, self.threads = tables, metric, floor, threads
        q = len(tables.row_start)
        self.rank_rows = [np.ascontiguousarray(t.T).view(np.int64) for t in tables.rank_bits]  # (Q, 256) each
        self.sum_rows = [t.reshape(q, 256) for t in tables.sums]

    def totals(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B,) int64 totals, and which masks' tables underflowed in some query (None: none did)."""
        queries = len(self.tables.row_start)
        parts = np.array_split(np.arange(queries), max(1, min(self.threads, queries)))
        if len(parts) == 1:
            results = [self._part(masks, parts[0])]
        else:
            with ThreadPoolExecutor(len(parts)) as pool:  # numpy releases the GIL in every step
                results = list(pool.map(lambda part: self._part(masks, part), parts))
        total, lost = results[0]
        for part_total, part_lost in results[1:]:
            total += part_total  # integers below 2^53: exact in any order
            if part_lost is not None:
                lost = part_lost if lost is None else lost | part_lost
        return total.astype(np.int64), lost

    def _part(self, masks: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        total = np.zeros(masks.size)
        lost: np.ndarray | None = None
        for start in range(0, masks.size, _BATCH_BLOCK):
            block = masks[start:start + _BATCH_BLOCK]
            column_bytes = [((block >> (8 * j)) & 255).astype(np.intp) for j in range(len(self.rank_rows))]
            for q in queries.tolist():
                den = self._query(q, column_bytes, total[start:start + block.size])
                if den is not None:
                    lost = np.zeros(masks.size, dtype=bool) if lost is None else lost
                    lost[start:start + block.size] |= den < TINY
        return total, lost

    def _query(self, q: int, column_bytes: list[np.ndarray], total: np.ndarray) -> np.ndarray | None:
        """Adds query q's value of each mask of a block to ``total``; returns the denominators
        when one underflowed."""
        ranked = self.rank_rows[0][q].take(column_bytes[0])
        for j in range(1, len(column_bytes)):
            ranked |= self.rank_rows[j][q].take(column_bytes[j])
        top = lowest_bits(ranked, self.tables.k)
        index = top & 255
        sums = self.sum_rows[0][q].take(index)
        for j in range(1, (int(top.max()).bit_length() + 7) // 8):  # higher bytes would add 0
            np.right_shift(top, 8 * j, out=index)
            index &= 255
            sums += self.sum_rows[j][q].take(index)
        num, den = sums.real, sums.imag
        smallest = den.min()
        total += softmax_units(num, den, self.tables.unit_weights[q], self.metric, self.floor, positive=smallest > 0)
        return den if smallest < TINY else None


def one_mask_total(tables, mask: int, metric: str, *, compiled: bool = True) -> float | None:
    """Integer-scaled F of one column mask of more than k columns (a float holding an integer),
    as :func:`top_k_sums` and the rounding would give it; None when a denominator underflows
    (the caller falls back). ``compiled``: through the compiled scan when it is (see
    :func:`compile_scan`), else in as few array operations as numpy allows (the reference)."""
    scan = _compiled_scan() if compiled else None
    if scan is not None:
        num, den = np.empty(len(tables.row_start)), np.empty(len(tables.row_start))
        scan.top_k(tables.rank_table, tables.sum_table, mask, tables.k, num, den)
        return None if scan.divide(num, den) < TINY else _total(num, tables.unit_weights, metric)
    rank_bits = tables.rank_bits
    ranked = rank_bits[0][mask & 255] | rank_bits[1][(mask >> 8) & 255] if len(rank_bits) > 1 \
        else rank_bits[0][mask & 255].copy()
    for j in range(2, len(rank_bits)):
        ranked |= rank_bits[j][(mask >> (8 * j)) & 255]
    top = lowest_bits(ranked.view(np.int64), tables.k)
    used = (int(top.max()).bit_length() + 7) // 8
    if used == 1:
        top |= tables.row_start
        total = tables.sums[0].take(top)
    else:
        total = _gather(tables, top, used)
    num, den = total.real, total.imag
    if den.min() < TINY:
        return None
    return _total(num / den, tables.unit_weights, metric)


def few_columns_total(tables, mask: int, metric: str) -> float | None:
    """Integer-scaled F of one column mask of at most k columns through the compiled scan: the
    per-byte column sums added as the per-byte products add them; None while the scan is not
    compiled or when a denominator underflows, as for the empty mask (the caller takes the products)."""
    scan = _compiled_scan()
    if scan is None:
        return None
    num, den = np.empty(len(tables.row_start)), np.empty(len(tables.row_start))
    scan.columns(tables.column_table, mask, num, den)
    return None if scan.divide(num, den) < TINY else _total(num, tables.unit_weights, metric)


def _total(values: np.ndarray, unit_weights: np.ndarray, metric: str) -> float:
    """Sum of the rounded query values in units of 2^-e, from each query's mixture (overwritten)."""
    if metric != "accuracy":
        np.log(values, out=values)  # numpy's log in every path: compiled code may call another one
    values *= unit_weights
    np.rint(values, out=values)
    return float(values.sum())  # integers below 2^53: exact in any order


def _gather(tables, top: np.ndarray, used: int) -> np.ndarray:
    """Sum over the ``used`` lowest rank bytes of ``top`` (…, Q) of their table entries, in one gather."""
    # Row offsets into ``all_sums`` per (rank byte, query): byte j's table starts j * Q * 256 in.
    index = np.empty((used,) + top.shape, dtype=np.int64)
    for j in range(used):
        # Shifts of contiguous int64, no strided byte views; the top byte needs no mask.
        np.right_shift(top, 8 * j, out=index[j])
        if j < used - 1:
            index[j] &= 255
    index |= tables.byte_start[:used].reshape((used,) + (1,) * (top.ndim - 1) + (-1,))
    terms = tables.all_sums.take(index)
    total = terms[0] if used == 1 else terms[0] + terms[1]
    for j in range(2, used):
        total += terms[j]
    return total


def top_k_sums(tables, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two softmax sums (B, Q) of a few column masks of more than k columns: per query, the
    mask's columns as bits at their gate ranks, the k lowest of them kept, their rank bytes'
    table entries added from the lowest byte up. ``tables``: the k >= 3 tables of
    :mod:`moe2_cli.gating.ensemble` (``rank_bits``, ``all_sums``, ``byte_start``, ``k``)."""
    rank_bits = tables.rank_bits
    ranked = rank_bits[0][masks & 255]
    for j in range(1, len(rank_bits)):
        ranked |= rank_bits[j][(masks >> (8 * j)) & 255]
    top = lowest_bits(ranked.view(np.int64), tables.k)  # ranks < 63: the sign bit stays clear
    used = (int(top.max()).bit_length() + 7) // 8  # bytes above the highest kept rank would add 0
    total = _gather(tables, top, used).reshape(masks.size, -1)
    return total.real, total.imag


# ------------------------------------------------------------ the compiled single-mask scan
#
# numpy pays a fixed cost per array operation, and one mask over 1,000 queries is a few dozen
# operations of a few microseconds each. With numba installed (``moe2[fast]``) a few loops over
# the queries do it all. It adds the same table entries in the same order as the array paths (a
# missing rank byte adds the empty byte's 0.0, which changes no sum), divides the same way, and
# leaves the log, the weights and the rounding to numpy, so every path gives the same bits.


def _scan_top_k(rank_table, sum_table, mask, k, num, den):
    """Per query: the selection's columns as bits at their gate ranks, the k lowest of them kept,
    their rank bytes' entries added from the lowest byte up into ``num`` and ``den``. Each step
    is a pass over the queries: loads that do not wait on each other or on a branch."""
    n_bytes, _, queries = rank_table.shape
    top = rank_table[0, mask & 255].copy()
    for j in range(1, n_bytes):
        row = rank_table[j, (mask >> (8 * j)) & 255]
        for q in range(queries):
            top[q] |= row[q]
    highest = 0
    for q in range(queries):
        rest = top[q]
        for _ in range(k):
            rest &= rest - 1
        top[q] ^= rest  # ranks < 63: the sign bit stays clear
        highest |= top[q]
    num[:] = 0.0
    den[:] = 0.0
    j = 0
    while highest:  # rank bytes above every query's top k would add 0
        table = sum_table[j]
        for q in range(queries):
            term = table[q, (top[q] >> (8 * j)) & 255]
            num[q] += term.real
            den[q] += term.imag
        highest >>= 8
        j += 1


def _scan_columns(column_table, mask, num, den):
    """Per query: the per-byte column sums of a selection of at most k columns, added from the
    lowest column byte up into ``num`` and ``den``."""
    num[:] = 0.0
    den[:] = 0.0
    for j in range(column_table.shape[0]):
        row = column_table[j, (mask >> (8 * j)) & 255]
        for q in range(row.size):
            num[q] += row[q].real
            den[q] += row[q].imag


def _divide(num, den):
    """num / den in place where den > 0; returns the smallest denominator."""
    smallest = np.inf
    for q in range(num.size):
        smallest = min(smallest, den[q])
        if den[q] > 0:
            num[q] /= den[q]
    return smallest


class _Compiled:
    """The scan's loops compiled by numba (on their first call)."""

    def __init__(self, numba):
        # Not cached on disk: numba would write next to this module. Compiling costs once per process.
        self.top_k = numba.njit(_scan_top_k)
        self.columns = numba.njit(_scan_columns)
        self.divide = numba.njit(_divide)


# Single masks a process evaluates through numpy before it compiles the scan: importing numba and
# compiling took 1.3 s (3.5 s under load), what about 50,000 single masks save at 20-40 µs each
# (1,000 queries). The solvers ask for few (brb's proof on 48 experts at k = 4: 74), so most
# runs never pay for the compiler.
COMPILE_AFTER = 50_000
_COMPILED: list[_Compiled | None] = []  # empty until compiled, or [None] without numba
_numpy_calls = [0]


def _compiled_scan() -> _Compiled | None:
    """The compiled scan once a process has evaluated :data:`COMPILE_AFTER` single masks (None
    before, and without numba)."""
    if not _COMPILED:
        _numpy_calls[0] += 1  # racing threads may miscount a few: it only moves the switch
        if _numpy_calls[0] <= COMPILE_AFTER:
            return None
        compile_scan()
    return _COMPILED[0]


def compile_scan() -> bool:
    """Compiles the single-mask scan now (for a caller that will ask for many single masks);
    False when numba is not installed. The results are the same bits either way."""
    if not _COMPILED:
        try:
            import numba
        except ImportError:
            _COMPILED.append(None)
        else:
            _COMPILED.append(_Compiled(numba))
    return _COMPILED[0] is not None
