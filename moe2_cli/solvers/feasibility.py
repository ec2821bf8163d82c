"""Feasibility specialised for solvers: the same integer rule as ``Budgets.feasible(instance.usage)``,
computed faster for the three ways solvers ask.

- :meth:`FeasibilityModel.feasible` answers for a batch of masks (vectorised, no partition);
- :meth:`FeasibilityModel.fits` answers for one mask in plain Python (cheap for small sets);
- :class:`Packer` grows a feasible set one expert at a time, each check costing O(rows·k);
- :meth:`FeasibilityModel.all_masks` answers for all 2^N masks by doubling (exhaustive search).

The rule (DESIGN §3): the energy of category c is the sum of the k largest ``energy_units[:, c]``
in S; the latency of c is the max over used servers of transmission + the k largest latencies of
S's experts there, plus aggregation. Both are written as rows "the k largest costs of S within a
group stay within the group's cap": one group for energy, one group per server for latency (its
cap with transmission and aggregation taken off, and no charge while the server is unused).
Only capped categories give rows. ``Problem.avoid`` (a selection must miss one of some masks
of experts) is checked beside the rows, by every path.

Mean budgets (``Problem.mean_ok``) are checked after the rows by every exact path: ``feasible``,
``fits``, ``all_masks`` and an exact packer. They break the down-set, so the parts solvers prune
with (``fits_worst``, ``singles``, a packer with ``exact=False``) leave them out: those only ever
rule out what no superset can repair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from moe2_cli.mean_cost import mean_use
from moe2_cli.problem import UNLIMITED, Problem, as_masks, avoids_one, bits_of, masks_to_bool, members

_CHUNK = 1 << 14
AVOID = "avoid"  # how blocking() names the rule of Problem.avoid


@dataclass(frozen=True)
class Row:
    """One capped constraint, named like a slack key ("energy.<cat>" / "latency.<cat>")."""

    name: str
    cost: np.ndarray  # (N,) int64 per-expert cost
    groups: tuple[np.ndarray, ...]  # expert indices of each group
    caps: tuple[int, ...]  # cap on the k largest costs within each group
    per_server: bool  # latency rows: an unused group costs nothing

    def group_of(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        for g, idx in enumerate(self.groups):
            out[idx] = g
        return out


class FeasibilityModel:
    """The capped constraints of a problem, with fast feasibility checks."""

    def __init__(self, problem: Problem):
        inst, budgets = problem.instance, problem.budgets
        self.problem = problem
        self.mean = problem.has_mean
        self.mean_names = tuple(
            f"{resource}.mean.{cat}" for resource, units in (("energy", budgets.energy_mean_units),
                                                             ("latency", budgets.latency_mean_units))
            for cat, cap in zip(inst.categories, units.tolist()) if cap < UNLIMITED)
        self.n = inst.n_experts
        self.k = inst.top_k
        self.rows = tuple(_energy_rows(inst, budgets) + _latency_rows(inst, budgets))
        self.avoid = problem.avoid
        self._servers = tuple(g.astype(np.int64) for g in inst.server_groups())
        # Usage of the empty selection is zero, so it is feasible unless a cap is negative.
        caps = np.concatenate([budgets.energy_units, budgets.latency_units])
        self.empty_ok = bool((caps >= 0).all())
        # Batch path: per row and group, experts by descending cost (first k chosen = k largest).
        self._sorted = [
            [(idx[np.lexsort((idx, -row.cost[idx]))], cap) for idx, cap in zip(row.groups, row.caps)]
            for row in self.rows
        ]
        # Scalar paths work on plain Python lists.
        self._cost = [row.cost.tolist() for row in self.rows]
        self._group = [row.group_of(self.n).tolist() for row in self.rows]
        self._caps = [list(row.caps) for row in self.rows]

    # ---------------------------------------------------------------- batch

    def feasible(self, masks) -> np.ndarray:
        """Boolean (B,) feasibility of bit masks, mean budgets included."""
        masks = as_masks(masks, self.n).reshape(-1)
        ok = self._feasible_worst(masks)
        if self.mean:
            where = np.flatnonzero(ok)
            ok[where] = self.problem.mean_ok(masks[where])
        return ok

    def _feasible_worst(self, masks: np.ndarray) -> np.ndarray:
        ok = np.ones(masks.size, dtype=bool)
        for start in range(0, masks.size, _CHUNK):
            chunk = masks[start:start + _CHUNK]
            ok[start:start + chunk.size] = self._feasible_chunk(chunk)
        if self.avoid:
            ok &= avoids_one(masks, self.avoid)
        ok[masks == 0] = self.empty_ok
        return ok

    def _feasible_chunk(self, masks: np.ndarray) -> np.ndarray:
        ok = np.ones(masks.size, dtype=bool)
        # Python-int masks (more experts than a word) are unpacked once; int64 ones are shifted.
        wide = masks_to_bool(masks, self.n) if masks.dtype == object and self.rows else None
        for row, groups in zip(self.rows, self._sorted):
            for order, cap in groups:
                if order.size == 0:
                    continue
                chosen = (masks[:, None] >> order[None, :]) & 1 if wide is None else wide[:, order].astype(np.int64)
                rank = np.cumsum(chosen, axis=1)
                use = (chosen * (rank <= self.k)) @ row.cost[order]
                fits = use <= cap
                ok &= (fits | (rank[:, -1] == 0)) if row.per_server else fits
        return ok

    # ---------------------------------------------------------------- scalar

    def fits(self, mask: int) -> bool:
        """Feasibility of one mask, mean budgets included."""
        return self.fits_worst(mask) and (not self.mean or bool(self.problem.mean_ok(np.array([mask]))[0]))

    def fits_worst(self, mask: int) -> bool:
        """Whether one mask meets the worst-case budgets and ``avoid``, in plain Python: a
        down-set, so a mask that fails has no feasible superset."""
        if mask == 0:
            return self.empty_ok
        if not self.avoids(mask):
            return False
        mem = members(mask)
        k = self.k
        for cost, group, caps in zip(self._cost, self._group, self._caps):
            per_group: dict[int, list[int]] = {}
            for i in mem:
                per_group.setdefault(group[i], []).append(cost[i])
            for g, vals in per_group.items():
                total = sum(vals) if len(vals) <= k else sum(sorted(vals, reverse=True)[:k])
                if total > caps[g]:
                    return False
        return True

    def avoids(self, mask: int) -> bool:
        """Whether ``mask`` misses one of the problem's masks to avoid (True when it has none)."""
        return not self.avoid or any(not mask & other for other in self.avoid)

    def singles(self) -> int:
        """Mask of the experts that meet the worst-case budgets alone; the others can never be
        selected (under mean budgets one that fits them may still need company to fit)."""
        alone = bits_of(range(self.n), self.n)
        return int(np.bitwise_or.reduce(alone[self._feasible_worst(alone)], initial=0))

    def packer(self, base: int = 0, *, exact: bool = True) -> Packer:
        """An incremental packer holding the set ``base``; with ``exact`` False it checks the
        worst-case budgets only."""
        packer = Packer(self, exact=exact)
        for i in members(base):
            packer.add(i)
        return packer

    def blocking(self, mask: int, i: int) -> list[str]:
        """Names of the rows that ``mask`` plus expert ``i`` violates (``avoid`` for that rule)."""
        mem = members(mask | (1 << i))
        names = [] if self.avoids(mask | (1 << i)) else [AVOID]
        for row, cost, group, caps in zip(self.rows, self._cost, self._group, self._caps):
            g = group[i]
            vals = sorted((cost[j] for j in mem if group[j] == g), reverse=True)[: self.k]
            if sum(vals) > caps[g]:
                names.append(row.name)
        return names + self.mean_violations(mask | (1 << i))

    def mean_violations(self, mask: int) -> list[str]:
        """Names of the mean budgets ``mask`` exceeds ("energy.mean.<cat>")."""
        if not self.mean:
            return []
        assert self.problem.routing is not None
        use = mean_use(self.problem.routing, self.problem.instance, np.array([mask]))
        energy_cap, latency_cap = self.problem.mean_caps()
        over = np.concatenate([use.energy[0] > energy_cap, use.latency[0] > latency_cap])
        capped = np.concatenate([energy_cap, latency_cap]) < UNLIMITED
        return [name for name, bad in zip(self.mean_names, over[capped].tolist()) if bad]

    # ---------------------------------------------------------------- all masks

    def all_masks(self, stop: Callable[[], bool] | None = None) -> np.ndarray | None:
        """Boolean (2^N,) feasibility of every mask, indexed by the mask, built by doubling;
        None if ``stop()`` turns true (asked before each row: a row at N = 22 takes a fraction
        of a second)."""
        ok = np.ones(1 << self.n, dtype=bool)
        servers: dict[int, np.ndarray] = {}
        for row in self.rows:
            if stop is not None and stop():
                return None
            if not row.per_server:
                ok &= _group_ok(row.cost, self.k, row.caps[0])
                continue
            for s, (idx, cap) in enumerate(zip(row.groups, row.caps)):
                if idx.size:
                    table = _group_ok(row.cost[idx], self.k, cap)
                    table[0] = True  # an unused server costs nothing
                    servers[s] = servers[s] & table if s in servers else table
        if servers:
            if stop is not None and stop():
                return None
            ok &= _combine_servers(servers, self._servers)
        if self.avoid:
            ok &= self._avoid_table()
        ok[0] = self.empty_ok
        if self.mean:
            where = np.flatnonzero(ok)
            ok[where] = self.problem.mean_ok(where.astype(np.int64))
        return ok


    def _avoid_table(self) -> np.ndarray:
        """(2^N,) whether each mask misses one of the masks to avoid: a mask misses ``other``
        when the k largest of its 0/1 membership costs in ``other`` sum to 0."""
        table = np.zeros(1 << self.n, dtype=bool)
        for other in self.avoid:
            table |= _group_ok((np.int64(other) >> np.arange(self.n, dtype=np.int64)) & 1, self.k, 0)
        return table


class Packer:
    """A feasible set grown one expert at a time."""

    def __init__(self, model: FeasibilityModel, *, exact: bool = True):
        self._m = model
        self._exact = exact and model.mean
        self.mask = 0
        # Per row, per group: the k largest costs so far, descending.
        self._top: list[dict[int, list[int]]] = [{} for _ in model.rows]

    def _grown(self, r: int, i: int) -> list[int]:
        top = self._top[r].get(self._m._group[r][i], [])
        return sorted(top + [self._m._cost[r][i]], reverse=True)[: self._m.k]

    def can_add(self, i: int) -> bool:
        m = self._m
        rows_ok = all(sum(self._grown(r, i)) <= m._caps[r][m._group[r][i]] for r in range(len(m.rows)))
        grown = self.mask | (1 << i)
        return rows_ok and m.avoids(grown) and (not self._exact or bool(m.problem.mean_ok(np.array([grown]))[0]))

    def add(self, i: int) -> None:
        """Add expert ``i`` without checking."""
        for r in range(len(self._m.rows)):
            self._top[r][self._m._group[r][i]] = self._grown(r, i)
        self.mask |= 1 << i

    def try_add(self, i: int) -> bool:
        """Add ``i`` when the set stays feasible; say whether it was added."""
        if self.can_add(i):
            self.add(i)
            return True
        return False


# -------------------------------------------------------------------- rows


def _energy_rows(inst, budgets) -> list[Row]:
    everyone = (np.arange(inst.n_experts, dtype=np.int64),)
    return [
        Row(f"energy.{cat}", inst.energy_units[:, c].astype(np.int64), everyone, (cap,), per_server=False)
        for c, (cat, cap) in enumerate(zip(inst.categories, budgets.energy_units.tolist()))
        if cap < UNLIMITED
    ]


def _latency_rows(inst, budgets) -> list[Row]:
    groups = tuple(g.astype(np.int64) for g in inst.server_groups())
    transmission = np.asarray(inst.transmission_units, dtype=np.int64).tolist()
    rows = []
    for c, (cat, cap) in enumerate(zip(inst.categories, budgets.latency_units.tolist())):
        if cap < UNLIMITED:
            # Aggregation is paid once; transmission once per used server.
            caps = tuple(cap - inst.aggregation_units - t for t in transmission)
            rows.append(Row(f"latency.{cat}", inst.latency_units[:, c].astype(np.int64), groups, caps, per_server=True))
    return rows


# -------------------------------------------------------------------- doubling


def _group_ok(cost: np.ndarray, k: int, cap: int) -> np.ndarray:
    """(2^m,) whether the k largest costs of each subset of the m items stay within ``cap``;
    indexed by the subset's bit mask over the items in the given order."""
    order = np.argsort(-cost, kind="stable")
    size = 1 << order.size
    total = np.zeros(size, dtype=np.int64)
    count = np.zeros(size, dtype=np.int8)
    for t, j in enumerate(order.tolist()):
        # Items arrive by descending cost, so one counts only while fewer than k are in.
        # The arrays are filled in place, half by half: fresh allocations cost more than the work.
        low, high = slice(0, 1 << t), slice(1 << t, 2 << t)
        np.multiply(count[low] < k, cost[j], out=total[high])
        total[high] += total[low]
        np.add(count[low], 1, out=count[high])
        np.minimum(count[high], k, out=count[high])
    return _to_natural_order(total <= cap, order)


def _to_natural_order(table: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Re-index a table built with bit t standing for item ``order[t]`` by natural bit masks."""
    if np.array_equal(order, np.arange(order.size)):
        return table
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    index = np.zeros(1 << order.size, dtype=np.int64)
    for item in range(order.size):
        half = 1 << item
        np.add(index[:half], 1 << int(position[item]), out=index[half:2 * half])
    return table[index]


def _combine_servers(tables: dict[int, np.ndarray], groups) -> np.ndarray:
    """AND of per-server tables over all masks: built with each server's experts as
    contiguous bits (an outer product per server), then re-indexed by natural masks."""
    ok = np.ones(1, dtype=bool)
    order = []
    for s, idx in enumerate(groups):
        if idx.size == 0:
            continue
        table = tables.get(s, np.ones(1 << idx.size, dtype=bool))
        ok = (table[:, None] & ok[None, :]).ravel()  # the new server's bits are the high bits
        order.extend(idx.tolist())
    return _to_natural_order(ok, np.array(order, dtype=np.int64))
